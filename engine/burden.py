"""Alert burden and overrides. Plain Python/numpy, no Django.

- Alerts per 100 patient-days: patient-days are distinct (patient, local day) pairs with at least
  one score of the model in the unit, so a patient scored hourly for a day counts once.
- An alert is *acted on* when its latest action is accept or escalate, *overridden* when its latest
  action is dismiss (counted by the dismissal reason), *acknowledged only* when the latest action is
  acknowledge, and *no response* when nobody has acted on it. Actions are append-only, so the latest
  one is the clinician's current decision.
- Time to decision: seconds from the alert first being shown to a clinician to the first action on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

ACTED_ON = ("accept", "escalate")
# Time-to-decision histogram bins (seconds) a clinician reads: <1 min, 1-5, 5-15, 15-60 min, 1-4 h, > 4 h.
DECISION_BINS = [0, 60, 300, 900, 3600, 14400, float("inf")]
DECISION_LABELS = ["< 1 min", "1-5 min", "5-15 min", "15-60 min", "1-4 h", "> 4 h"]


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def alert_burden(
    patient_days: Mapping[str, int], groups: Iterable[Mapping], seconds_to_decision: Iterable[float]
) -> dict:
    """`groups`: rows {"unit", "latest_action" (None = no action), "latest_reason", "n"}."""
    units: dict[str, dict] = {
        unit: {"unit": unit, "patient_days": int(days), "alerts": 0, "acted_on": 0, "overridden": 0,
               "acknowledged_only": 0, "no_response": 0, "overrides_by_reason": {}}
        for unit, days in patient_days.items()
    }  # fmt: skip
    overrides: dict[str, int] = {}
    for group in groups:
        row = units.setdefault(
            group["unit"],
            {"unit": group["unit"], "patient_days": 0, "alerts": 0, "acted_on": 0, "overridden": 0,
             "acknowledged_only": 0, "no_response": 0, "overrides_by_reason": {}},
        )  # fmt: skip
        n, action = int(group["n"]), group["latest_action"]
        row["alerts"] += n
        if action in ACTED_ON:
            row["acted_on"] += n
        elif action == "dismiss":
            row["overridden"] += n
            reason = group["latest_reason"] or "no reason"
            row["overrides_by_reason"][reason] = row["overrides_by_reason"].get(reason, 0) + n
            overrides[reason] = overrides.get(reason, 0) + n
        elif action == "acknowledge":
            row["acknowledged_only"] += n
        else:
            row["no_response"] += n
    for row in units.values():
        row["alerts_per_100_patient_days"] = (
            100.0 * row["alerts"] / row["patient_days"] if row["patient_days"] else None
        )
        row["share_acted_on"] = _share(row["acted_on"], row["alerts"])
        row["share_overridden"] = _share(row["overridden"], row["alerts"])
        row["share_no_response"] = _share(row["no_response"], row["alerts"])
    total_alerts = sum(r["alerts"] for r in units.values())
    total_days = sum(r["patient_days"] for r in units.values())
    seconds = np.asarray(list(seconds_to_decision), dtype=np.float64)
    decision: dict = {"n": int(seconds.size), "labels": DECISION_LABELS}
    decision["counts"] = np.histogram(seconds, bins=DECISION_BINS)[0].tolist() if seconds.size else [0] * 6
    if seconds.size:
        p25, median, p75, p90 = np.percentile(seconds, [25, 50, 75, 90])
        decision.update(p25=float(p25), median=float(median), p75=float(p75), p90=float(p90))
    return {
        "units": sorted(units.values(), key=lambda r: r["unit"]),
        "overall": {
            "patient_days": total_days,
            "alerts": total_alerts,
            "alerts_per_100_patient_days": 100.0 * total_alerts / total_days if total_days else None,
            "share_acted_on": _share(sum(r["acted_on"] for r in units.values()), total_alerts),
            "share_overridden": _share(sum(r["overridden"] for r in units.values()), total_alerts),
            "share_no_response": _share(sum(r["no_response"] for r in units.values()), total_alerts),
        },
        "overrides_by_reason": dict(sorted(overrides.items(), key=lambda kv: -kv[1])),
        "time_to_decision": decision,
    }
