"""Alert burden and overrides. Plain Python/numpy, no Django.

- Alerts per 100 patient-days: patient-days are distinct (patient, local day) pairs with at least
  one score of the model in the unit, so a patient scored hourly for a day counts once.
- Each alert is counted once, by its state (engine.decisions: the latest action decides it):
  accepted, escalated, dismissed (an override, also counted by the dismissal reason), acknowledged,
  or no response when nobody has acted on it. The five shares add up to 100% as shown.
- Time to decision: seconds from the alert first being shown to a clinician to the first action on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from .decisions import OUTCOME_LABELS, percent_shares, state_after

# Time-to-decision histogram bins (seconds) a clinician reads: <1 min, 1-5, 5-15, 15-60 min, 1-4 h, > 4 h.
DECISION_BINS = [0, 60, 300, 900, 3600, 14400, float("inf")]
DECISION_LABELS = ["< 1 min", "1-5 min", "5-15 min", "15-60 min", "1-4 h", "> 4 h"]


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _unit_row(unit: str, days: int) -> dict:
    return {
        "unit": unit, "patient_days": int(days), "alerts": 0,
        "by_state": dict.fromkeys(OUTCOME_LABELS, 0), "overrides_by_reason": {},
    }  # fmt: skip


def _finish(row: dict) -> dict:
    """Rates and shares of one row of counts (a unit, or all units)."""
    days, alerts = row["patient_days"], row["alerts"]
    row["alerts_per_100_patient_days"] = 100.0 * alerts / days if days else None
    row["share_by_state"] = {state: _share(n, alerts) for state, n in row["by_state"].items()}
    row["percent_by_state"] = percent_shares(row["by_state"])
    return row


def alert_burden(
    patient_days: Mapping[str, int], groups: Iterable[Mapping], seconds_to_decision: Iterable[float]
) -> dict:
    """`groups`: rows {"unit", "latest_action" (None = no action), "latest_reason", "n"}.

    Per unit and overall: alerts, alerts per 100 patient-days, `by_state` (counts per state, no
    response as "new"), `share_by_state` (fractions) and `percent_by_state` (rounded so the shown
    percentages add up to 100); the dismissals by reason; the time to decision."""
    units = {unit: _unit_row(unit, days) for unit, days in patient_days.items()}
    overrides: dict[str, int] = {}
    for group in groups:
        row = units.setdefault(group["unit"], _unit_row(group["unit"], 0))
        n, state = int(group["n"]), state_after(group["latest_action"])
        row["alerts"] += n
        row["by_state"][state] += n
        if state == "dismissed":
            reason = group["latest_reason"] or "no reason"
            row["overrides_by_reason"][reason] = row["overrides_by_reason"].get(reason, 0) + n
            overrides[reason] = overrides.get(reason, 0) + n
    overall = _unit_row("all", sum(r["patient_days"] for r in units.values()))
    for row in units.values():
        _finish(row)
        overall["alerts"] += row["alerts"]
        for state, n in row["by_state"].items():
            overall["by_state"][state] += n
    seconds = np.asarray(list(seconds_to_decision), dtype=np.float64)
    decision: dict = {"n": int(seconds.size), "labels": DECISION_LABELS}
    decision["counts"] = np.histogram(seconds, bins=DECISION_BINS)[0].tolist() if seconds.size else [0] * 6
    if seconds.size:
        p25, median, p75, p90 = np.percentile(seconds, [25, 50, 75, 90])
        decision.update(p25=float(p25), median=float(median), p75=float(p75), p90=float(p90))
    overall = _finish(overall)
    del overall["unit"], overall["overrides_by_reason"]
    return {
        "units": sorted(units.values(), key=lambda r: r["unit"]),
        "overall": overall,
        "state_labels": OUTCOME_LABELS,
        "overrides_by_reason": dict(sorted(overrides.items(), key=lambda kv: -kv[1])),
        "time_to_decision": decision,
    }
