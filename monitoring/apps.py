from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "monitoring"
    verbose_name = "Model monitoring"

    def ready(self) -> None:
        from explanations.signals import explanations_stored, predictions_stored

        from . import receivers

        predictions_stored.connect(receivers.summaries_refresh_on_scores, dispatch_uid="monitoring-refresh")
        explanations_stored.connect(
            receivers.summaries_refresh_when_explained, dispatch_uid="monitoring-refresh-explained"
        )
