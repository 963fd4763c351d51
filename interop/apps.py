from django.apps import AppConfig


class InteropConfig(AppConfig):
    name = "interop"
    verbose_name = "EHR interoperability (FHIR, CDS Hooks, SMART)"
