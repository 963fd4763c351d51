"""Small display helpers shared by the clinician templates."""

from django import template

from clinician_ui import access

register = template.Library()

# Tier is carried by word and shape, never by colour alone.
_TIER_SHAPES = {"high": "▲", "medium": "◆", "low": "○"}


@register.inclusion_tag("clinician_ui/_tier_badge.html")
def tier_badge(tier: str) -> dict:
    return {"tier": tier, "shape": _TIER_SHAPES.get(tier, "?"), "label": (tier or "unknown").capitalize()}


@register.filter
def percent(risk) -> str:
    """0.713 -> "71%"; below one percent says so rather than showing 0%."""
    if risk is None:
        return ""
    value = float(risk) * 100
    if 0 < value < 1:
        return "<1%"
    return f"{value:.0f}%"


@register.filter
def signed(value, digits: int = 2) -> str:
    if value is None:
        return ""
    return f"{float(value):+.{int(digits)}f}".replace("-", "\u2212")


@register.filter
def points(value) -> str:
    """Probability points, e.g. +12.3 pts (approximate)."""
    if value is None:
        return ""
    return f"{float(value) * 100:+.1f}".replace("-", "\u2212")


@register.simple_tag
def user_role(user) -> str:
    return access.user_role(user) or "no role"


@register.simple_tag
def user_units(user) -> str:
    units = access.visible_units(user)
    if units is None:
        return "all units"
    return ", ".join(units) if units else "no unit assigned"


@register.filter
def action_reason_label(record) -> str:
    """The label a clinician picked, from settings.ALERT_ACTION_REASONS; the code if since removed."""
    from clinician_ui.selectors import reason_label

    return reason_label(record.action, record.reason)
