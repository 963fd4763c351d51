"""The worklist's rows as HTML, the same for the page and for the JSON its background refresh
polls, so the page replaces exactly the rows whose signature changed.

A rendered row is cached under a fingerprint of everything the row shows (tier, risk, state,
abstention, unit and bed, the patient's name, the minute the "alert fired" text is at, the
sparkline's scores): a row whose content changed has another key, so the cache never needs
invalidating and never serves a stale row. Two levels: this process's memory, then the Django
cache (Redis in production, shared by the web workers); a miss renders the row's template.

A row's signature (`sig`, what the page compares to decide whether to replace a row) covers the
same fingerprint but the minute: the page keeps "alert fired ... ago" current itself
(static/js/worklist.js, the `since` filter's arithmetic), so the clock alone never makes a poll
resend a row.
"""

import hashlib

from django.core.cache import cache
from django.template.loader import get_template
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from common.timestamps import iso_utc
from patients.models import Alert, Prediction

from .selectors import Worklist

# Bump when _alert_row.html, _low_item.html or their template tags change.
ROW_CACHE_VERSION = 3
ROW_CACHE_SECONDS = 600
# Rows kept in this process (about 1 KB each); emptied whole when full.
LOCAL_ROWS_MAX = 5000
_local_rows: dict[str, dict] = {}


def _trend_key(trend) -> tuple:
    return tuple((p.prediction_id, p.risk, p.tier) for p in trend.points)


def _alert_fingerprint(alert: Alert, now) -> tuple[tuple, int]:
    """What the row shows, and the minute its "fired ... ago" text is at."""
    patient = alert.patient
    # The row prints how long ago the alert fired (minute resolution): the cache key changes with
    # the minute, so a rendered text is never older than a minute; the signature does not.
    fired_minutes = int((now - alert.created_at).total_seconds() // 60)
    return (
        "alert", alert.pk, alert.tier, alert.risk, alert.state, alert.abstains, alert.unit,
        alert.prediction.bed, patient.external_id, patient.display_name, patient.simulated,
        alert.created_at.isoformat(), alert.prediction.scored_at.isoformat(), _trend_key(alert.trend),
        alert.threshold_note,
        alert.baseline and (alert.baseline.rate, alert.baseline.unit),
    ), fired_minutes  # fmt: skip


def _low_fingerprint(prediction: Prediction, now) -> tuple[tuple, None]:
    patient = prediction.patient
    return (
        "low", prediction.pk, prediction.risk, prediction.abstains, prediction.unit, prediction.bed,
        patient.external_id, patient.display_name, _trend_key(prediction.trend), prediction.threshold_note,
        prediction.baseline and (prediction.baseline.rate, prediction.baseline.unit),
    ), None  # fmt: skip


def _cache_key(fingerprint: tuple[tuple, int | None]) -> str:
    digest = hashlib.sha256(repr(fingerprint).encode()).hexdigest()[:40]
    return f"worklist-row:{ROW_CACHE_VERSION}:{digest}"


def _signature(fingerprint: tuple[tuple, int | None], css: str) -> str:
    shown, _minute = fingerprint
    return hashlib.sha256(repr((ROW_CACHE_VERSION, css, shown)).encode()).hexdigest()[:16]


def _remember(fresh: dict[str, dict]) -> None:
    if len(_local_rows) + len(fresh) > LOCAL_ROWS_MAX:
        _local_rows.clear()
    _local_rows.update(fresh)


def _rendered(
    items: list, *, template_name: str, context_name: str, fingerprint, css: str | None
) -> list[dict]:
    """`{"key", "css", "sig", "html"}` per item, from a cache when its fingerprint is there.

    `sig` changes when anything shown but the minute changes, so the page replaces only rows
    that did."""
    now = timezone.now()
    fingerprints = [fingerprint(item, now) for item in items]
    keys = [_cache_key(f) for f in fingerprints]
    found = {key: _local_rows[key] for key in keys if key in _local_rows}
    missing = [key for key in keys if key not in found]
    if missing:
        shared = cache.get_many(missing)
        found.update(shared)
        template = None
        fresh: dict[str, dict] = {}
        for item, key, shown in zip(items, keys, fingerprints, strict=True):
            if key in found:
                continue
            template = template or get_template(template_name)
            html = template.render({context_name: item})
            # An abstention is its own state: not coloured by the score the model calls unreliable.
            row_css = css or ("row-abstains" if getattr(item, "abstains", False) else f"row-{item.tier}")
            found[key] = fresh[key] = {"css": row_css, "sig": _signature(shown, row_css), "html": html}
        if fresh:
            cache.set_many(fresh, ROW_CACHE_SECONDS)
        _remember({key: found[key] for key in missing})
    return [{"key": f"{context_name}-{item.pk}", **found[key]} for item, key in zip(items, keys, strict=True)]


def worklist_rows(data: Worklist) -> tuple[list[dict], list[dict]]:
    """The rendered alert rows and low-tier items of a worklist page."""
    alerts = _rendered(
        data.alerts,
        template_name="clinician_ui/_alert_row.html",
        context_name="alert",
        fingerprint=_alert_fingerprint,
        css=None,
    )
    low = _rendered(
        data.low,
        template_name="clinician_ui/_low_item.html",
        context_name="prediction",
        fingerprint=_low_fingerprint,
        css="row-low",
    )
    return alerts, low


def rows_html(rows: list[dict], *, tag: str) -> SafeString:
    """The rows inside their `<tr>` / `<li>`, as the page serves them: one string, not a template
    loop per row. The row html is the template's (escaped); key, css and sig are escaped here."""
    return mark_safe(  # noqa: S308 - every part is escaped here or by the row template
        "".join(
            f'<{tag} class="{escape(row["css"])}" data-key="{escape(row["key"])}" '
            f'data-sig="{escape(row["sig"])}">{row["html"]}</{tag}>\n'
            for row in rows
        )
    )


def _detail_url(name: str):
    """`pk -> url` for a detail page: reversed once per request, not once per row (a row's url
    differs from another's only by the id)."""
    sentinel = 987654321
    url = reverse(name, args=[sentinel])
    head, tail = url.rsplit(str(sentinel), 1)
    return lambda pk: f"{head}{int(pk)}{tail}"


def _held(row: dict, held: dict[str, str]) -> bool:
    return held.get(row["key"]) == row["sig"]


def alert_rows_json(data: Worklist, rows: list[dict], *, held: dict[str, str] | None = None) -> list[dict]:
    """The alert rows as the background refresh reads them: the html plus what it announces; a row
    the page holds already (`held`: key -> signature, worklist_poll) as its key alone."""
    held = held or {}
    url = _detail_url("alert-detail")
    return [
        {"key": row["key"]}
        if _held(row, held)
        else row
        | {
            "alert": alert.pk,
            "patient": {"id": alert.patient.external_id, "display_name": alert.patient.display_name},
            "unit": alert.unit,
            "bed": alert.prediction.bed,
            "tier": alert.tier,
            "risk": alert.risk,
            "abstains": alert.abstains,
            "state": alert.state,
            "created_at": iso_utc(alert.created_at),
            "url": url(alert.pk),
            "trend": alert.trend.as_json(),
        }
        for alert, row in zip(data.alerts, rows, strict=True)
    ]


def low_rows_json(data: Worklist, rows: list[dict], *, held: dict[str, str] | None = None) -> list[dict]:
    held = held or {}
    url = _detail_url("prediction-detail")
    return [
        {"key": row["key"]}
        if _held(row, held)
        else row
        | {
            "prediction": p.pk,
            "patient": {"id": p.patient.external_id, "display_name": p.patient.display_name},
            "unit": p.unit,
            "bed": p.bed,
            "tier": p.tier,
            "risk": p.risk,
            "abstains": p.abstains,
            "url": url(p.pk),
            "trend": p.trend.as_json(),
        }
        for p, row in zip(data.low, rows, strict=True)
    ]
