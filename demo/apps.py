from django.apps import AppConfig


class DemoConfig(AppConfig):
    name = "demo"
    verbose_name = "RHC demo (real admissions; simulated times, names, beds and scoring run)"
