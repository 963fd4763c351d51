"""What the worklist's background refresh sends: only what changed since the list the page holds.

Every worklist answer (the page, and each poll that is not a 304) carries a list version: a digest
of what the page then shows (the filters and pages, each list's counts, its row keys in order and
their signatures). The page polls with it as `If-None-Match`, and the poll answers

- 304 Not Modified, no body, when the list is that version still;
- otherwise the rows in order, each row the page already holds (same key, same signature) as its
  key alone, every other row in full (its html and what it announces).

What a version's page holds (each row's key and signature, and the filters and pages it was for) is
kept in the Django cache for LIST_STATE_SECONDS. A version not found there (expired, evicted, or
for other filters or pages) gets every row in full: a miss costs bytes, never a stale row. The
state holds row keys and signatures, no patient data; what the page claims to hold only decides
which rows go without their html, and every row listed comes from the user's own query.
"""

import hashlib
import json
from dataclasses import dataclass, field

from django.core.cache import cache

from .selectors import Worklist

# How long a version's state is kept after it was last served or confirmed (a 304 extends it).
LIST_STATE_SECONDS = 3600


@dataclass
class Poll:
    version: str
    # True: the page holds this version already (answer 304).
    unchanged: bool = False
    # The version the answer is relative to, and the rows (key -> signature) the page holds then.
    base: str | None = None
    held: dict[str, str] = field(default_factory=dict)


def _scope(data: Worklist) -> list:
    return [
        data.unit,
        data.tier,
        data.state,
        data.include_left,
        data.alerts_page.number,
        data.low_page.number,
    ]


def _state_key(version: str) -> str:
    return f"worklist-list:{version}"


def _version(data: Worklist, alert_rows: list[dict], low_rows: list[dict]) -> str:
    shown = {
        "scope": _scope(data),
        "shows": [data.shows_alerts, data.shows_low],
        "pages": [data.alerts_page.as_json(), data.low_page.as_json()],
        "alerts": [[row["key"], row["sig"]] for row in alert_rows],
        "low": [[row["key"], row["sig"]] for row in low_rows],
    }
    return hashlib.sha256(json.dumps(shown, separators=(",", ":")).encode()).hexdigest()[:32]


def worklist_poll(
    *, data: Worklist, alert_rows: list[dict], low_rows: list[dict], client_versions: list[str]
) -> Poll:
    """The list's version, and what the page that sent `client_versions` (its If-None-Match, empty
    for a page load or a client with nothing) holds of it. Remembers the version's rows for the
    next poll. Cache reads and writes only, no query."""
    version = _version(data, alert_rows, low_rows)
    if version in client_versions or "*" in client_versions:
        cache.touch(_state_key(version), LIST_STATE_SECONDS)
        return Poll(version=version, unchanged=True)

    poll = Poll(version=version)
    if client_versions:
        state = cache.get(_state_key(client_versions[0]))
        # Rows held for other filters or pages are not reused: a filter change gets full rows.
        if state and state["scope"] == _scope(data):
            poll.base, poll.held = client_versions[0], state["rows"]
    rows = {row["key"]: row["sig"] for row in (*alert_rows, *low_rows)}
    cache.set(_state_key(version), {"scope": _scope(data), "rows": rows}, LIST_STATE_SECONDS)
    return poll
