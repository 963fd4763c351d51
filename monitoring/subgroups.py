"""Subgroup monitoring of one window (issue 18): per unit, shift and the patients' demographics (sex,
age band, race, ethnicity; CONTRACT section 2), the engine's subgroup figures on the window's
encounters (each encounter's latest score in the window):

- `performance`: engine.subgroups.subgroup_metrics (fairlearn, bootstrap intervals) on the
  encounters whose outcome has arrived;
- `estimate`: engine.subgroup_flags.subgroup_cbpe on every encounter (before outcomes; an estimate
  that assumes the model is calibrated);
- `burden`: alerts per 100 encounters, share acted on and override rate by reason per group, from
  each alert's latest clinician action.

The disparity flags and the rows sorted by disparity come from engine.subgroup_flags. Admin-only
aggregates (monitoring.views); computed by a Celery task and cached like the dashboard's summary.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
from celery import signature
from django.conf import settings
from django.core.cache import cache
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from common.timestamps import iso_utc
from engine.shifts import shift_of_hour
from engine.subgroup_flags import disparity_flags, sort_by_disparity, subgroup_burden, subgroup_cbpe
from engine.subgroups import Subgroup, assign_groups, subgroup_metrics
from models_registry.models import ModelVersion
from patients.models import AlertAction

from .selectors import Slice, hospital_time_zone, predictions_in
from .services import cache_seconds
from .subgroup_specs import Monitored, group_value, monitored_subgroups


def _age(born, age, scored_at: datetime) -> float:
    if born is not None:
        on = scored_at.date()
        return float(on.year - born.year - ((on.month, on.day) < (born.month, born.day)))
    return float(age) if age is not None else np.nan


_ENCOUNTER_COLUMNS = [
    "risk",
    "outcome",
    "unit",
    "shift",
    "sex",
    "age",
    "race",
    "ethnicity",
    "alerted",
    "action",
    "reason",
]


def _scores_newest_first(
    version: ModelVersion, start: datetime, end: datetime, where: Slice, feature_columns: tuple[str, ...]
):
    """The window's scores with an encounter, each encounter's newest first, with the alert's latest
    action and reason."""
    latest_action = AlertAction.objects.filter(alert=OuterRef("alert__id")).order_by("-acted_at", "-id")
    return (
        predictions_in(version, start, end, where)
        .filter(encounter__isnull=False)
        .order_by("encounter_id", "-scored_at", "-id")
        .values_list(
            "encounter_id",
            "risk",
            "encounter__outcome__outcome",
            "unit",
            "scored_at",
            "patient__sex",
            "patient__birth_date",
            "patient__age",
            "patient__race",
            "patient__ethnicity",
            "alert__id",
            *(f"features__{name}__value" for name in feature_columns),
        )
        .annotate(
            action=Subquery(latest_action.values("action")[:1]),
            reason=Subquery(latest_action.values("reason")[:1]),
        )
    )


def _encounter_row(row: tuple, feature_columns: tuple[str, ...], zone) -> dict:
    _, risk, outcome, unit, scored, sex, born, age, race, ethnicity, alert, *posted = row
    posted, (action, reason) = posted[: len(feature_columns)], posted[len(feature_columns) :]
    return {
        "risk": risk,
        "outcome": np.nan if outcome is None else float(outcome),
        "unit": unit,
        "shift": str(shift_of_hour(scored.astimezone(zone).hour)),
        "sex": sex or None,
        "age": _age(born, age, scored),
        "race": race or None,
        "ethnicity": ethnicity or None,
        "alerted": alert is not None,
        "action": (action or "none") if alert is not None else None,
        "reason": reason,
        **{f"feature:{name}": value for name, value in zip(feature_columns, posted, strict=True)},
    }


def window_encounters(
    version: ModelVersion, start: datetime, end: datetime, where: Slice, feature_columns: tuple[str, ...] = ()
) -> pd.DataFrame:
    """One row per encounter (its latest score in the window): risk, outcome (NaN until known), unit,
    shift, the patient's demographics, its alert's latest action and reason (if alerted), and the
    posted value of each of `feature_columns` (model inputs a declared subgroup splits by)."""
    rows = _scores_newest_first(version, start, end, where, feature_columns)
    zone = hospital_time_zone()
    out, seen = [], None
    for row in rows.iterator(chunk_size=5000):
        encounter = row[0]
        if encounter == seen:
            continue  # an earlier score of the same encounter
        seen = encounter
        out.append(_encounter_row(row, feature_columns, zone))
    return pd.DataFrame(out, columns=[*_ENCOUNTER_COLUMNS, *(f"feature:{name}" for name in feature_columns)])


def _one(frame: pd.DataFrame, monitored, tiers: dict[str, float], n_boot: int) -> dict:
    spec = monitored.spec
    column = f"feature:{spec.column}" if monitored.source == "feature" else spec.column
    groups = assign_groups(frame[column].map(lambda v: group_value(v, spec)), spec)
    risk = frame["risk"].to_numpy(dtype=np.float64)
    known = frame["outcome"].notna().to_numpy()
    alerted = frame["alerted"].to_numpy(dtype=bool)
    actions = pd.DataFrame(
        {
            "group": groups[alerted].astype(str),
            "action": frame.loc[alerted, "action"],
            "reason": frame.loc[alerted, "reason"],
        }
    )
    out: dict = {
        "subgroup": spec.as_dict(),
        "group_order": [str(c) for c in groups.cat.categories],
        "estimate": subgroup_cbpe(risk, groups, tiers, min_size=settings.SUBGROUP_MIN_SIZE),
        "burden": subgroup_burden(risk, groups, tiers, actions, min_size=settings.SUBGROUP_MIN_SIZE),
        "performance": None,
    }
    if known.any():
        out["performance"] = subgroup_metrics(
            frame.loc[known, "outcome"].to_numpy(dtype=int),
            risk[known],
            groups[known],
            tiers,
            n_boot=n_boot,
            min_size=settings.SUBGROUP_MIN_SIZE,
            min_events=settings.SUBGROUP_MIN_EVENTS,
            spec=spec,
        )
    margin, floor = settings.SUBGROUP_CALIBRATION_MARGIN, settings.SUBGROUP_ALERT_RATIO_FLOOR
    flagged = out["performance"] or out["estimate"]
    out["flags"] = [
        {**f, "subgroup": spec.label, "message": f"{spec.label}: {f['message']}"}
        for f in disparity_flags(flagged, calibration_margin=margin, alert_ratio_floor=floor)
    ]
    out["sorted"] = [{**r, "subgroup": spec.label} for r in sort_by_disparity(flagged)]
    return out


def subgroup_window(
    *, version: ModelVersion, start: datetime, end: datetime, where: Slice, n_boot: int | None = None
) -> dict:
    """The subgroup view of one window and slice: per subgroup the three results above, every flag,
    and one table of (subgroup, group, metric) rows sorted by the size of the disparity."""
    monitored, unseen = monitored_subgroups(version)
    inputs = tuple(m.spec.column for m in monitored if m.source == "feature")
    frame = window_encounters(version, start, end, where, feature_columns=inputs)
    tiers = version.thresholds
    specs = [
        Monitored(Subgroup("unit", "Unit"), "patient"),
        Monitored(Subgroup("shift", "Shift"), "patient"),
        *monitored,
    ]
    n_boot = settings.SUBGROUP_MONITORING_RESAMPLES if n_boot is None else n_boot
    reports = [_one(frame, spec, tiers, n_boot) for spec in specs] if len(frame) else []
    rows = sorted(
        (r for report in reports for r in report["sorted"]),
        key=lambda r: abs(r["difference"]) / (100.0 if r["metric"].startswith("alerts_per_100") else 1.0),
        reverse=True,
    )
    return {
        "slice": str(where),
        "encounters": len(frame),
        "with_outcome": int(frame["outcome"].notna().sum()) if len(frame) else 0,
        "thresholds": tiers,
        "subgroups": reports,
        "flags": [f for report in reports for f in report["flags"]],
        "sorted": rows,
        "not_monitored": unseen,
    }


def subgroups_compute(*, comparison) -> dict:
    """Compute one comparison's subgroup view (its version, window and slice) and cache it."""
    version = ModelVersion.objects.get(pk=comparison.version_id)
    view = subgroup_window(
        version=version, start=comparison.start, end=comparison.end, where=Slice.parse(comparison.where)
    )
    view.update(status="ready", computed_at=iso_utc(timezone.now()), comparison=comparison.as_json())
    cache.set(f"{comparison.cache_key}:subgroups", view, cache_seconds())
    return view


def subgroups_request(*, comparison) -> dict | None:
    """The cached subgroup view, or None after queueing its computation (once, however often asked)."""
    key = f"{comparison.cache_key}:subgroups"
    view = cache.get(key)
    if view is None and cache.add(f"{key}:queued", 1, timeout=600):
        # By name: the tasks module imports this one.
        signature("monitoring.tasks.monitoring_subgroups_task", args=(comparison.as_json(),)).delay()
        view = cache.get(key)  # tasks run in-process (the embedded default, tests): it is there
    return view


def calibration_points(view: dict) -> list[dict]:
    """The calibration chart's traces, one per subgroup: per group (not too few) mean risk against the
    observed event rate with its interval once outcomes arrived; before, the CBPE expected rate."""
    traces = []
    for report in view["subgroups"]:
        measured = report["performance"]
        source = measured or report["estimate"]
        points = []
        for group in report["group_order"]:
            entry = source["groups"].get(group)
            if entry is None or entry.get("too_few"):
                continue
            m = entry["metrics"]
            if measured:
                gap = m["calibration_in_large"]
                mean_risk, rate = m["mean_risk"]["value"], m["event_rate"]["value"]
                low = None if gap["ci_high"] is None else mean_risk - gap["ci_high"]
                high = None if gap["ci_low"] is None else mean_risk - gap["ci_low"]
            else:
                mean_risk = rate = m["expected_event_rate"]["value"]
                low = high = None
            points.append(
                {
                    "group": group,
                    "n": entry["n"],
                    "mean_risk": mean_risk,
                    "rate": rate,
                    "low": low,
                    "high": high,
                }
            )
        traces.append(
            {"subgroup": report["subgroup"]["label"], "estimate": measured is None, "points": points}
        )
    return traces
