"""Small display helpers shared by the clinician templates."""

from datetime import datetime

from django import template
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from accounts import permissions
from engine.headline import shown_percent_text
from engine.tiers import Tier
from patients.actions import reason_label

from ..selectors import model_card_path

register = template.Library()

# Tier is carried by word and shape, never by colour alone.
_TIER_SHAPES = {Tier.HIGH: "▲", Tier.MEDIUM: "◆", Tier.LOW: "○"}


@register.inclusion_tag("clinician_ui/_tier_badge.html")
def tier_badge(tier: str) -> dict:
    return {"tier": tier, "shape": _TIER_SHAPES.get(tier, "?"), "label": (tier or "unknown").capitalize()}


@register.filter
def percent(risk) -> str:
    """0.713 -> "71%"; below one percent says so rather than showing 0%."""
    if risk is None:
        return ""
    return shown_percent_text(risk)


# The units `since` counts in; static/js/worklist.js counts in the same ones.
_SINCE_UNITS = (("week", 604800), ("day", 86400), ("hour", 3600), ("minute", 60))


@register.filter
def since(value: datetime, now: datetime | None = None) -> str:
    """How long ago, as Django's timesince says it below four weeks ("42 minutes", "1 hour,
    5 minutes", "2 days, 3 hours": the two largest units, adjacent ones only), and in weeks beyond
    ("6 weeks, 2 days") rather than calendar months, so the worklist's script can keep the text
    current in the page with the same arithmetic (static/js/worklist.js `since`)."""
    if value is None:
        return ""
    seconds = max(0, int(((now or timezone.now()) - value).total_seconds()))
    parts: list[str] = []
    for name, size in _SINCE_UNITS:
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}\xa0{name}{'' if count == 1 else 's'}")
        elif parts:
            break
        if len(parts) == 2:
            break
    return ", ".join(parts) or "0\xa0minutes"


# A score that reached Sightline this much after it was computed says so beside "alert fired".
_LATE_ARRIVAL_SECONDS = 15 * 60


@register.filter
def late_arrival(alert) -> str:
    """'' when the alert fired as its score arrived (within 15 min of scoring), else how long
    after scoring it arrived ("3 hours"): a back-filled or delayed score's alert is new, its score
    is not."""
    scored_at = alert.prediction.scored_at
    if (alert.created_at - scored_at).total_seconds() < _LATE_ARRIVAL_SECONDS:
        return ""
    return since(scored_at, alert.created_at)


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
    return permissions.user_role(user) or "no role"


@register.simple_tag
def user_units(user) -> str:
    units = permissions.visible_units(user)
    if units is None:
        return "all units"
    return ", ".join(units) if units else "no unit assigned"


@register.filter
def action_reason_label(record) -> str:
    """The label a clinician picked, from settings.ALERT_ACTION_REASONS; the code if since removed."""
    return reason_label(record.action, record.reason)


_SPARK_W, _SPARK_H, _SPARK_PAD = 96, 26, 3


@register.simple_tag
def sparkline(trend) -> str:
    """The patient's last scores as a small inline SVG on a fixed 0-100% axis (so a flat line means
    a stable risk, not a zoomed-in wobble), with the same numbers as its text alternative."""
    points = list(getattr(trend, "points", ()) or ())
    if not points:
        return ""
    risks = [float(p.risk) for p in points]
    span = _SPARK_W - 2 * _SPARK_PAD
    step = span / (len(risks) - 1) if len(risks) > 1 else 0.0
    coords = [
        (
            _SPARK_PAD + (i * step if len(risks) > 1 else span / 2),
            _SPARK_PAD + (1.0 - min(max(r, 0.0), 1.0)) * (_SPARK_H - 2 * _SPARK_PAD),
        )
        for i, r in enumerate(risks)
    ]
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    last_x, last_y = coords[-1]
    scores = ", ".join(percent(r) for r in risks)
    noun = "score" if len(risks) == 1 else f"{len(risks)} scores"
    label = f"Risk trend, last {noun}, oldest first: {scores}"
    line = (
        format_html('<polyline points="{}" fill="none" stroke="currentColor" stroke-width="1.5"/>', path)
        if len(coords) > 1
        else ""
    )
    return format_html(
        '<svg class="sparkline" role="img" aria-label="{label}" width="{w}" height="{h}" '
        'viewBox="0 0 {w} {h}"><title>{label}</title>'
        '<line x1="0" y1="{base}" x2="{w}" y2="{base}" class="spark-axis"/>{line}'
        '<circle cx="{cx}" cy="{cy}" r="2.5" fill="currentColor"/></svg>',
        label=label,
        w=_SPARK_W,
        h=_SPARK_H,
        base=_SPARK_H - _SPARK_PAD,
        line=line,
        cx=f"{last_x:.1f}",
        cy=f"{last_y:.1f}",
    )


@register.simple_tag
def risk_change(trend) -> str:
    """What changed since the previous score: "▲ +12 pts, was medium"; "first score" when none.
    The arrow is decoration; the words carry the direction for screen readers."""
    delta = getattr(trend, "delta_points", None)
    if delta is None:
        return mark_safe('<span class="change change-first">first score</span>')  # noqa: S308 - constant
    direction = "up" if delta > 0 else "down" if delta < 0 else "same"
    text = (f"{delta:+d} pt" + ("" if abs(delta) == 1 else "s")).replace("-", "\u2212") if delta else "±0 pts"
    was = f", was {trend.previous_tier}" if trend.previous_tier else ""
    return format_html(
        '<span class="change change-{}"><span aria-hidden="true">{}</span>'
        '<span class="visually-hidden">risk {}</span> {}{}</span>',
        direction,
        {"up": "▲", "down": "▼", "same": "→"}[direction],
        {"up": "up", "down": "down", "same": "unchanged,"}[direction],
        text,
        was,
    )


@register.filter
def model_card_url(version) -> str:
    return model_card_path(version)


@register.simple_tag
def may_read_audit(user) -> bool:
    return permissions.may_read_audit(user)


@register.simple_tag
def may_view_monitoring(user) -> bool:
    return permissions.may_view_monitoring(user)


@register.simple_tag
def may_use_django_admin(user) -> bool:
    return permissions.may_use_django_admin(user)
