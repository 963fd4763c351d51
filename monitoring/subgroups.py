"""Subgroup monitoring of one window (issue 18): per unit, shift and the patients' demographics (sex,
age band, race, ethnicity; CONTRACT section 2), the engine's subgroup figures on the window's
encounters (each encounter's latest score in the window):

- `performance`: engine.subgroups.subgroup_metrics (fairlearn, bootstrap intervals) on the
  encounters whose outcome has arrived;
- `estimate`: engine.subgroup_flags.subgroup_cbpe on every encounter (an estimate that assumes the
  model is calibrated);
- `burden`: alerts per 100 encounters, share acted on and override rate by reason per group, from
  each alert's latest clinician action.

A window usually has some outcomes but not all (a 30-day outcome arrives late): each group is judged
on its measured figures once it has enough outcomes (SUBGROUP_MIN_SIZE, SUBGROUP_MIN_EVENTS) and on
its CBPE estimate until then (`basis`). The alert-rate ratio and the override-rate gap need no
outcome: they are flagged from `burden`, on every encounter, always. Mean |SHAP| per subgroup is not
computed in monitoring (the model card has it, on the reference set). The flags and the rows sorted
by disparity come from engine.subgroup_flags. Admin-only aggregates (monitoring.views); computed by a
Celery task and cached like the dashboard's summary.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
from celery import signature
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from common.timestamps import iso_utc
from engine.shifts import shift_of_hour
from engine.subgroup_flags import (
    OVERRIDE_MARGIN,
    OVERRIDE_MIN_ALERTS,
    disparity_flags,
    sort_by_disparity,
    subgroup_burden,
    subgroup_cbpe,
)
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
    if connection.vendor == "postgresql":
        # Each encounter's newest score picked by PostgreSQL (DISTINCT ON), read in one go: a week
        # of hourly scores is one row per encounter, not every score (100k scores of 1,147
        # encounters: 33 s through a server-side cursor, whose first-rows plan joined row by row).
        rows = iter(rows.distinct("encounter_id"))
    else:
        rows = rows.iterator(chunk_size=5000)
    zone = hospital_time_zone()
    out, seen = [], None
    for row in rows:
        encounter = row[0]
        if encounter == seen:
            continue  # an earlier score of the same encounter
        seen = encounter
        out.append(_encounter_row(row, feature_columns, zone))
    return pd.DataFrame(out, columns=[*_ENCOUNTER_COLUMNS, *(f"feature:{name}" for name in feature_columns)])


# Flags that need outcomes come from `performance`; those that need none from `burden`, on every
# encounter of the window, so they show from the first score on.
_OUTCOME_FLAGS = ("calibration_in_large", "auroc_below_overall")


def _flag_settings() -> dict:
    return {
        "calibration_margin": settings.SUBGROUP_CALIBRATION_MARGIN,
        "alert_ratio_floor": settings.SUBGROUP_ALERT_RATIO_FLOOR,
        "override_margin": getattr(settings, "SUBGROUP_OVERRIDE_MARGIN", OVERRIDE_MARGIN),
    }


def _results(frame: pd.DataFrame, groups: pd.Series, spec, tiers: dict[str, float], n_boot: int) -> dict:
    """performance (encounters with an outcome), estimate (CBPE) and burden (every encounter)."""
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
    min_alerts = getattr(settings, "SUBGROUP_OVERRIDE_MIN_ALERTS", OVERRIDE_MIN_ALERTS)
    out: dict = {
        "estimate": subgroup_cbpe(risk, groups, tiers, min_size=settings.SUBGROUP_MIN_SIZE),
        "burden": subgroup_burden(
            risk, groups, tiers, actions, min_size=settings.SUBGROUP_MIN_SIZE, min_alerts=min_alerts
        ),
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
    return out


def _basis(report: dict) -> dict[str, str]:
    """Per group (and "overall"): "performance" when enough of its outcomes are in, else "estimate"
    (CBPE) when the group is big enough, else "too few"."""
    measured, estimate = report["performance"], report["estimate"]
    out = {}
    for key in ["overall", *report["group_order"]]:
        m = (
            (measured or {}).get("overall")
            if key == "overall"
            else (measured or {}).get("groups", {}).get(key)
        )
        e = estimate["overall"] if key == "overall" else estimate["groups"].get(key)
        if m is not None and not m.get("too_few"):
            out[key] = "performance"
        elif e is not None and not e.get("too_few"):
            out[key] = "estimate"
        else:
            out[key] = "too few"
    return out


def _sorted_rows(report: dict) -> list[dict]:
    """Measured figures of the groups with enough outcomes, CBPE figures (estimate: True) of the
    others, and every group's burden and clinician actions; alerts per 100 from burden only (all
    encounters, not just those with an outcome)."""
    basis = report["basis"]
    rows = sort_by_disparity(report["burden"])
    for kind in ("performance", "estimate"):
        if report[kind] is None:
            continue
        rows += [
            r
            for r in sort_by_disparity(report[kind])
            if basis[r["group"]] == kind and not r["metric"].startswith("alerts_per_100")
        ]
    return rows


def _one(frame: pd.DataFrame, monitored, tiers: dict[str, float], n_boot: int) -> dict:
    spec = monitored.spec
    column = f"feature:{spec.column}" if monitored.source == "feature" else spec.column
    groups = assign_groups(frame[column].map(lambda v: group_value(v, spec, monitored.source)), spec)
    out: dict = {
        "subgroup": spec.as_dict(),
        "group_order": [str(c) for c in groups.cat.categories],
        **_results(frame, groups, spec, tiers, n_boot),
    }
    out["basis"] = _basis(out)
    flag_settings = _flag_settings()
    flags = [f for f in disparity_flags(out["burden"], **flag_settings) if f["kind"] not in _OUTCOME_FLAGS]
    if out["performance"] is not None:
        flags += [
            f for f in disparity_flags(out["performance"], **flag_settings) if f["kind"] in _OUTCOME_FLAGS
        ]
    out["flags"] = [{**f, "subgroup": spec.label, "message": f"{spec.label}: {f['message']}"} for f in flags]
    out["sorted"] = [{**r, "subgroup": spec.label} for r in _sorted_rows(out)]
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
        "burden": burden_rows({"subgroups": reports}),
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


def _calibration_point(report: dict, group: str) -> dict | None:
    basis = report["basis"].get(group)
    if basis == "performance":
        entry = report["performance"]["groups"][group]
        m = entry["metrics"]
        gap = m["calibration_in_large"]
        mean_risk, rate = m["mean_risk"]["value"], m["event_rate"]["value"]
        low = None if gap["ci_high"] is None else mean_risk - gap["ci_high"]
        high = None if gap["ci_low"] is None else mean_risk - gap["ci_low"]
    elif basis == "estimate":
        entry = report["estimate"]["groups"][group]
        mean_risk = rate = entry["metrics"]["expected_event_rate"]["value"]
        low = high = None
    else:
        return None
    return {
        "group": group,
        "n": entry["n"],
        "mean_risk": mean_risk,
        "rate": rate,
        "low": low,
        "high": high,
        "estimate": basis == "estimate",
    }


def calibration_points(view: dict) -> list[dict]:
    """The calibration chart's traces, one per subgroup: per group (not too few) mean risk against the
    observed event rate with its interval once enough of its outcomes arrived; before, the CBPE
    expected rate (the point's `estimate` is true; the trace's when all of its points are)."""
    traces = []
    for report in view["subgroups"]:
        points = [p for g in report["group_order"] if (p := _calibration_point(report, g)) is not None]
        traces.append(
            {
                "subgroup": report["subgroup"]["label"],
                "estimate": all(p["estimate"] for p in points),
                "points": points,
            }
        )
    return traces


def burden_rows(view: dict) -> list[dict]:
    """The burden table: per subgroup and group (too-few groups included, without figures), encounters,
    alerts, alerts per 100 at each tier, share acted on (accepted or escalated), override rate and
    override rate by reason (dismissals with that reason / alerts)."""
    rows = []
    for report in view["subgroups"]:
        groups = report["burden"]["groups"]
        for group in report["group_order"]:
            entry = groups.get(group)
            if entry is None or entry["n"] == 0:  # a band no patient of the window falls in
                continue
            row = {"subgroup": report["subgroup"]["label"], "group": group, "n": entry["n"]}
            if entry["too_few"]:
                rows.append({**row, "too_few": True})
                continue
            actions = entry.get("actions") or {}
            rows.append(
                {
                    **row,
                    "too_few": False,
                    "alerts": actions.get("alerts_with_actions"),
                    "alerts_per_100": {
                        k[len("alerts_per_100_") :]: v["value"]
                        for k, v in entry["metrics"].items()
                        if k.startswith("alerts_per_100_")
                    },
                    "acted_on_share": actions.get("acted_on_share"),
                    "override_rate": actions.get("override_rate"),
                    "override_rate_by_reason": actions.get("override_rate_by_reason", {}),
                }
            )
    return rows
