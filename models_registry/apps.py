from django.apps import AppConfig


class ModelsRegistryConfig(AppConfig):
    name = "models_registry"
    verbose_name = "Model registry"

    def ready(self) -> None:
        # The receivers import tasks and services, which need the app registry ready.
        from . import receivers
        from .signals import version_registered

        version_registered.connect(receivers.subgroups_on_registration, dispatch_uid="subgroups")
