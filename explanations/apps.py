from django.apps import AppConfig


class ExplanationsConfig(AppConfig):
    name = "explanations"

    def ready(self) -> None:
        from models_registry.signals import version_registered

        from . import receivers

        version_registered.connect(receivers.profile_build_on_registration, dispatch_uid="profile-build")
