"""What a clinician may answer an alert with: the actions' reasons (settings.ALERT_ACTION_REASONS)
and their labels, for every page, export and integration that names them."""

from django.conf import settings


def action_reasons() -> dict[str, list[dict[str, str]]]:
    return settings.ALERT_ACTION_REASONS


def reason_labels(action: str) -> dict[str, str]:
    """code -> label of one action's reasons."""
    return {reason["code"]: reason["label"] for reason in action_reasons().get(action, [])}


def reason_label(action: str, code: str) -> str:
    """The label a clinician picked; the code itself if the reason has since been removed."""
    return reason_labels(action).get(code, code)
