"""Template filters of the registry pages."""

from django import template
from django.utils.dateparse import parse_datetime

register = template.Library()


@register.filter
def iso_minute(value) -> str:
    """An ISO timestamp of the card's JSON as a reader takes it in: "2026-12-03 13:41 UTC"."""
    moment = parse_datetime(value) if isinstance(value, str) else value
    return f"{moment:%Y-%m-%d %H:%M} UTC" if moment else ""
