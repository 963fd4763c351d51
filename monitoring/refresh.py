"""Keeping the dashboard's opening view computed: one rule for the debounced refresh (a worker, when
scores arrive) and for `manage.py demo`, and the window the page opens on while a refresh of newer
scores is still to come."""

from datetime import datetime

from django.core.cache import cache

from .services import (
    CACHE_PREFIX,
    Comparison,
    default_comparisons,
    default_window,
    summary_cached,
    summary_compute,
)
from .subgroups import subgroups_compute


def _refreshed_key(version_id: int) -> str:
    return f"{CACHE_PREFIX}:refreshed-window:{version_id}"


def defaults_refresh(*, version_id: int) -> int:
    """Compute the version's default summaries and the subgroup view of the overall one (the page's
    default) now, then remember their window; returns how many summaries."""
    comparisons = default_comparisons(version_ids=[version_id])
    for comparison in comparisons:
        summary_compute(comparison=comparison)
    for comparison in comparisons:
        if comparison.where == "overall":
            subgroups_compute(comparison=comparison)
            window = [comparison.start.isoformat(), comparison.end.isoformat()]
            cache.set(_refreshed_key(version_id), window, None)
    return len(comparisons)


def page_window(version_id: int | None) -> tuple[datetime, datetime, datetime | None]:
    """(start, end, newer_from) of the window the dashboard opens on.

    The default window (services.default_window), unless scores of a newer hour moved it and the
    refresh that includes them has not run yet (it comes MONITORING_REFRESH_DEBOUNCE_SECONDS after
    them): then the window the last refresh computed, whose figures are cached, and `newer_from`,
    the end of that window, from which on scores are not in its figures yet (the page says so).
    """
    start, end = default_window(version_id)
    if version_id is None or summary_cached(Comparison(version_id, start, end, "overall")) is not None:
        return start, end, None
    refreshed = cache.get(_refreshed_key(version_id))
    if refreshed is None:
        return start, end, None
    old_start, old_end = (datetime.fromisoformat(v) for v in refreshed)
    if old_end >= end or summary_cached(Comparison(version_id, old_start, old_end, "overall")) is None:
        return start, end, None
    return old_start, old_end, old_end
