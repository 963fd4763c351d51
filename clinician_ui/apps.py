from django.apps import AppConfig


class ClinicianUiConfig(AppConfig):
    name = "clinician_ui"
    verbose_name = "Clinician UI"
