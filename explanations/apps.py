from django.apps import AppConfig

from models_registry.signals import version_registered


class ExplanationsConfig(AppConfig):
    name = "explanations"

    def ready(self) -> None:
        # The receivers import models and tasks, which need the app registry ready.
        from . import receivers

        version_registered.connect(receivers.profile_build_on_registration, dispatch_uid="profile-build")
