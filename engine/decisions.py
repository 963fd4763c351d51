"""What clinicians decided about an alert: one vocabulary for the worklist, the alert page,
monitoring and the exports. Plain Python, no Django.

An alert's state is derived from its append-only action log: the latest action decides it. An
alert nobody has acted on is ``new``; in monitoring that is "no response".
"""

from __future__ import annotations

from collections.abc import Mapping

# Action (what the clinician did, a verb) -> state (what the alert is now).
STATE_AFTER_ACTION = {
    "acknowledge": "acknowledged",
    "accept": "accepted",
    "escalate": "escalated",
    "dismiss": "dismissed",
}
# The alert states, in the order a worklist offers them, with the words every page uses.
STATE_LABELS = {
    "new": "New",
    "acknowledged": "Acknowledged",
    "accepted": "Accepted",
    "escalated": "Escalated",
    "dismissed": "Dismissed",
}
NO_RESPONSE = "new"
# What monitoring calls each state when it counts alerts.
OUTCOME_LABELS = {**STATE_LABELS, NO_RESPONSE: "No response"}


def state_after(action: str | None) -> str:
    """The alert's state when `action` is its latest action (None: no action yet)."""
    return STATE_AFTER_ACTION[action] if action else NO_RESPONSE


def percent_shares(counts: Mapping[str, int], decimals: int = 1) -> dict[str, float] | None:
    """Each count's share of the total in percent, rounded to `decimals` so that the shown shares
    add up to exactly 100 (largest remainder). None when there is nothing to share."""
    total = sum(counts.values())
    if not total:
        return None
    unit = 10**decimals
    exact = {key: 100 * unit * n / total for key, n in counts.items()}
    floors = {key: int(value) for key, value in exact.items()}
    left = 100 * unit - sum(floors.values())
    for key in sorted(exact, key=lambda k: (floors[k] - exact[k], list(counts).index(k)))[:left]:
        floors[key] += 1
    return {key: n / unit for key, n in floors.items()}


# The worklist's lanes, in list order. An alert that still needs a decision comes first (new, or
# acknowledged: seen, being reviewed); then alerts where the model abstains (no reliable score, so
# neither their tier nor their number may rank them); then alerts already decided.
DECIDED_STATES = ("accepted", "escalated", "dismissed")
LANE_OPEN, LANE_ABSTAINS, LANE_DECIDED = 0, 1, 2
LANE_LABELS = {
    LANE_OPEN: "Needs a decision",
    LANE_ABSTAINS: "Model abstains: review without a score",
    LANE_DECIDED: "Decided",
}
