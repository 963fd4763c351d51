"""Template filters of the registry pages. The figures are rounded by models_registry.card_figures,
which the Model Facts label and its PDF use too."""

from django import template
from django.utils.dateparse import parse_datetime

from models_registry import card_figures

register = template.Library()

register.filter("metric", card_figures.metric_text)
register.filter("signed_metric", card_figures.signed_metric_text)
register.filter("fixed", card_figures.fixed)
register.filter("sci", card_figures.sci)
register.filter("percent", card_figures.percent)
register.filter("points", card_figures.points)


@register.filter
def iso_minute(value) -> str:
    """An ISO timestamp of the card's JSON as a reader takes it in: "2026-12-03 13:41 UTC"."""
    moment = parse_datetime(value) if isinstance(value, str) else value
    return f"{moment:%Y-%m-%d %H:%M} UTC" if moment else ""
