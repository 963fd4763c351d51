"""Monitoring-window figures that need no outcomes, disparity flags, and the disparity sort.

Results share the shape documented in :mod:`engine.subgroups`. :func:`subgroup_burden` and
:func:`subgroup_cbpe` need only risk and group labels, so they run on a live window before outcomes
arrive; :func:`disparity_flags` and :func:`sort_by_disparity` accept any of the three result kinds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from engine.subgroups import _alert_ratio, _num, _order, _prepare

ACTIONS = ("acknowledge", "accept", "dismiss", "escalate", "none")
ACTED_ON = ("accept", "escalate")
# Logit-scale figures are not comparable with the probability-scale ones, so they are left out of the
# default disparity sort (pass ``metrics=`` to include them).
_NOT_SORTED_BY_DEFAULT = ("calibration_intercept", "calibration_slope", "mean_risk", "event_rate")
# Override-rate disparity: a gap in the share of alerts dismissed above OVERRIDE_MARGIN (probability
# points) between two groups that each have at least OVERRIDE_MIN_ALERTS alerts.
OVERRIDE_MARGIN = 0.10
OVERRIDE_MIN_ALERTS = 20


def _value(entry: dict[str, Any], metric: str) -> float | None:
    return entry.get("metrics", {}).get(metric, {}).get("value")


def disparity_flags(
    result: dict[str, Any],
    *,
    calibration_margin: float = 0.05,
    alert_ratio_floor: float = 0.8,
    override_margin: float = OVERRIDE_MARGIN,
) -> list[dict[str, Any]]:
    """Flags for a model card or monitoring window, each ``{"kind", "group"/"groups", figures...,
    "message"}``. Groups marked too_few are never flagged. Works on any result shape from
    :mod:`engine.subgroups`; kinds that need outcomes are skipped for burden/cbpe results.

    (a) ``calibration_in_large``: |mean risk - event rate| in a group exceeds ``calibration_margin``
        (probability scale; the offset-logistic intercept is reported alongside).
    (b) ``auroc_below_overall``: the group's AUROC 95% interval lies wholly below the overall one:
        upper bound of the group's interval < lower bound of the overall interval.
    (c) ``alert_rate_ratio``: per tier, lowest / highest group alerts-per-100 is below
        ``alert_ratio_floor`` (the four-fifths rule), naming both groups.
    (d) ``override_rate``: (burden results with actions) the share of alerts dismissed in one group
        exceeds that of another by more than ``override_margin`` (probability points), both groups
        with at least the result's ``min_alerts`` alerts: clinicians overriding one group's alerts
        more than another's.
    """
    flags: list[dict[str, Any]] = []
    groups = {k: e for k, e in result.get("groups", {}).items() if not e.get("too_few")}
    overall = result.get("overall", {})
    overall_auc = None if overall.get("too_few") else overall.get("metrics", {}).get("auroc")
    if result.get("kind") == "performance":
        for name, e in groups.items():
            flags += _calibration_flag(name, e["metrics"], calibration_margin)
            flags += _auroc_flag(name, e["metrics"], overall_auc)
    for tier, r in result.get("disparity", {}).get("alert_rate_ratio", {}).items():
        if r.get("ratio") is not None and r["ratio"] < alert_ratio_floor:
            flags.append(_ratio_flag(tier, r, alert_ratio_floor))
    overrides = result.get("disparity", {}).get("override_rate")
    if overrides and overrides.get("difference") is not None and overrides["difference"] > override_margin:
        flags.append(_override_flag(overrides, override_margin))
    return flags


def _calibration_flag(name: str, m: dict[str, Any], margin: float) -> list[dict[str, Any]]:
    citl = m["calibration_in_large"]["value"]
    if citl is None or abs(citl) <= margin:
        return []
    direction = "over" if citl > 0 else "under"
    mean_risk, rate = m["mean_risk"]["value"], m["event_rate"]["value"]
    return [
        {
            "kind": "calibration_in_large",
            "group": name,
            "mean_risk": mean_risk,
            "event_rate": rate,
            "difference": citl,
            "ci_low": m["calibration_in_large"]["ci_low"],
            "ci_high": m["calibration_in_large"]["ci_high"],
            "calibration_intercept": m["calibration_intercept"]["value"],
            "margin": margin,
            "message": (
                f"In {name} the model {direction}-predicts: mean risk {mean_risk:.1%}"
                f" against an event rate of {rate:.1%} (margin {margin:.0%})."
            ),
        }
    ]


def _auroc_flag(name: str, m: dict[str, Any], overall: dict[str, Any] | None) -> list[dict[str, Any]]:
    auc, lo, hi = m["auroc"]["value"], m["auroc"]["ci_low"], m["auroc"]["ci_high"]
    whole = overall or {}
    o_auc, o_lo, o_hi = whole.get("value"), whole.get("ci_low"), whole.get("ci_high")
    if None in (auc, lo, hi, o_auc, o_lo, o_hi) or not hi < o_lo:
        return []
    return [
        {
            "kind": "auroc_below_overall",
            "group": name,
            "auroc": auc,
            "ci_low": lo,
            "ci_high": hi,
            "overall_auroc": o_auc,
            "overall_ci_low": o_lo,
            "overall_ci_high": o_hi,
            "message": (
                f"AUROC in {name} is {auc:.2f} (95% CI {lo:.2f}-{hi:.2f}), wholly below the overall"
                f" {o_auc:.2f} (95% CI {o_lo:.2f}-{o_hi:.2f})."
            ),
        }
    ]


def _override_flag(r: dict[str, Any], margin: float) -> dict[str, Any]:
    low, high = r["lowest"], r["highest"]
    return {
        "kind": "override_rate",
        "groups": [high, low],
        **{k: r[k] for k in ("highest", "highest_rate", "highest_alerts", "lowest", "lowest_rate")},
        **{k: r[k] for k in ("lowest_alerts", "difference", "ratio")},
        "margin": margin,
        "message": (
            f"Clinicians dismiss {r['highest_rate']:.0%} of the alerts in {high}"
            f" ({r['highest_alerts']} alerts) against {r['lowest_rate']:.0%} in {low}"
            f" ({r['lowest_alerts']} alerts): a gap of"
            f" {r['difference']:.0%}, over the {margin:.0%} margin."
        ),
    }


def _ratio_flag(tier: str, r: dict[str, Any], floor: float) -> dict[str, Any]:
    low, high = r["lowest"], r["highest"]
    low_rate, high_rate = r["lowest_alerts_per_100"], r["highest_alerts_per_100"]
    return {
        "kind": "alert_rate_ratio",
        "tier": tier,
        "groups": [low, high],
        "ratio": r["ratio"],
        "lowest": low,
        "lowest_alerts_per_100": low_rate,
        "highest": high,
        "highest_alerts_per_100": high_rate,
        "floor": floor,
        "message": (
            f"At {tier} or above, {low} gets {low_rate:.1f} alerts per 100 patients against"
            f" {high_rate:.1f} in {high} (ratio {r['ratio']:.2f}, under {floor:.2f})."
        ),
    }


def sort_by_disparity(result: dict[str, Any], metrics: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Rows ``{"group", "metric", "value", "ci_low", "ci_high", "overall", "overall_ci_low",
    "overall_ci_high", "difference", "estimate"}`` (difference = group - overall, in the metric's own
    units; intervals None where the result has none; estimate True for CBPE figures) for every
    reported group and metric, largest disparity first.

    The sort key is |difference|, with alerts-per-100 divided by 100 so that every default metric is on
    a probability scale. By default the logit-scale intercept/slope and raw mean risk/event rate are
    left out (``calibration_in_large`` carries their gap); pass ``metrics`` to choose."""
    overall = result.get("overall", {})
    if overall.get("too_few"):
        return []
    names = (
        list(metrics)
        if metrics is not None
        else [m for m in overall["metrics"] if m not in _NOT_SORTED_BY_DEFAULT]
    )
    rows = []
    for group, e in result.get("groups", {}).items():
        if e.get("too_few"):
            continue
        for m in names:
            v, o = _value(e, m), _value(overall, m)
            if v is None or o is None:
                continue
            scale = 100.0 if m.startswith("alerts_per_100") else 1.0
            fig, whole = e["metrics"][m], overall["metrics"][m]
            rows.append(
                {
                    "group": group,
                    "metric": m,
                    "value": v,
                    "ci_low": fig.get("ci_low"),
                    "ci_high": fig.get("ci_high"),
                    "overall": o,
                    "overall_ci_low": whole.get("ci_low"),
                    "overall_ci_high": whole.get("ci_high"),
                    "difference": v - o,
                    "estimate": bool(fig.get("estimate", False)),
                    "_key": abs(v - o) / scale,
                }
            )
    rows.sort(key=lambda r: r["_key"], reverse=True)
    for r in rows:
        del r["_key"]
    return rows


def _action_figures(actions: pd.DataFrame) -> dict[str, Any]:
    """Shares over alerts in ``actions``: each action, acted on (accept/escalate), responded (not none),
    override (dismiss) rate, and dismissals per reason / alerts."""
    n = len(actions)
    act = actions["action"].fillna("none").astype(str).str.lower()
    share = {a: _num((act == a).sum() / n) if n else None for a in ACTIONS}
    reasons = actions.get("reason", pd.Series(index=actions.index, dtype=object))
    dismissed = reasons[act == "dismiss"].fillna("no reason given").astype(str)
    by_reason = {r: float(c / n) for r, c in dismissed.value_counts().sort_index().items()}
    return {
        "alerts_with_actions": n,
        "share_by_action": share,
        "acted_on_share": _num(act.isin(ACTED_ON).sum() / n) if n else None,
        "responded_share": _num((act != "none").sum() / n) if n else None,
        "override_rate": share["dismiss"],
        "override_rate_by_reason": by_reason,
    }


def subgroup_burden(
    risk: Any,
    groups: Any,
    thresholds: Mapping[str, float],
    actions: pd.DataFrame | None = None,
    *,
    min_size: int = 50,
    min_alerts: int = OVERRIDE_MIN_ALERTS,
) -> dict[str, Any]:
    """Label-free alert burden per group: alerts per 100 patients at each tier and the alert-rate ratio.

    ``actions`` (one row per alert: ``group``, ``action`` in acknowledge/accept/dismiss/escalate/none,
    ``reason``) adds, per group, ``actions`` figures from :func:`_action_figures`; shares use the alerts in
    the actions table as denominator, and ``disparity["override_rate"]`` compares the override rates of
    the groups with at least ``min_alerts`` alerts (:func:`_override_gap`). Groups with
    ``n < min_size`` patients are too_few (no figures)."""
    p, g, _ = _prepare(risk, groups)
    order = _order(g)
    g = g.astype(str).to_numpy()
    acts = None if actions is None else actions.assign(group=actions["group"].astype(str))

    def entry(mask: np.ndarray, act: pd.DataFrame | None) -> dict[str, Any]:
        n = int(mask.sum())
        if n < min_size:
            return {"too_few": True, "n": n}
        metrics = {
            f"alerts_per_100_{k}": {"value": 100.0 * float(np.mean(p[mask] >= t))}
            for k, t in thresholds.items()
        }
        out: dict[str, Any] = {"too_few": False, "n": n, "metrics": metrics}
        if act is not None:
            out["actions"] = _action_figures(act)
            metrics["acted_on_share"] = {"value": out["actions"]["acted_on_share"]}
            metrics["override_rate"] = {"value": out["actions"]["override_rate"]}
        return out

    entries = {k: entry(g == k, None if acts is None else acts[acts["group"] == k]) for k in order}
    disparity = {"alert_rate_ratio": _alert_ratio(entries, thresholds)}
    if acts is not None:
        disparity["override_rate"] = _override_gap(entries, min_alerts)
    return {
        "kind": "burden",
        "thresholds": {k: float(v) for k, v in thresholds.items()},
        "settings": {"min_size": min_size, "min_alerts": min_alerts},
        "overall": entry(np.ones(len(p), bool), acts),
        "groups": entries,
        "disparity": disparity,
    }


def _override_gap(entries: Mapping[str, dict], min_alerts: int) -> dict[str, Any]:
    """Highest and lowest override rate over the groups (not too_few) with ``min_alerts`` alerts or
    more: their difference (probability points) and ratio (lowest / highest)."""
    rates = {
        g: (e["actions"]["override_rate"], e["actions"]["alerts_with_actions"])
        for g, e in entries.items()
        if not e["too_few"]
        and e["actions"]["override_rate"] is not None
        and e["actions"]["alerts_with_actions"] >= min_alerts
    }
    out: dict[str, Any] = {"min_alerts": min_alerts, "groups_compared": list(rates), "difference": None}
    if len(rates) < 2:
        return {**out, "ratio": None, "lowest": None, "highest": None}
    lo = min(rates, key=lambda k: rates[k][0])
    hi = max(rates, key=lambda k: rates[k][0])
    (lo_rate, lo_n), (hi_rate, hi_n) = rates[lo], rates[hi]
    return {
        **out,
        "difference": hi_rate - lo_rate,
        "ratio": _num(lo_rate / hi_rate) if hi_rate > 0 else None,
        "lowest": lo,
        "lowest_rate": lo_rate,
        "lowest_alerts": lo_n,
        "highest": hi,
        "highest_rate": hi_rate,
        "highest_alerts": hi_n,
    }


def expected_auroc(risk: Any, n_sim: int = 300, random_state: int = 0) -> float:
    """Mean AUROC over ``n_sim`` label draws y ~ Bernoulli(risk) (draws with one class are skipped).
    Each draw's AUROC is the Mann-Whitney statistic from mid-ranks, identical to ``roc_auc_score``."""
    p = np.asarray(risk, dtype=float)
    n, ranks, rng = len(p), rankdata(p), np.random.default_rng(random_state)
    aucs: list[np.ndarray] = []
    chunk = max(1, 2_000_000 // max(n, 1))  # bounded memory; same random stream as one big draw
    for start in range(0, n_sim, chunk):
        ys = rng.random((min(chunk, n_sim - start), n)) < p
        n1 = ys.sum(axis=1)
        ok = (n1 > 0) & (n1 < n)
        n1 = n1[ok]
        aucs.append((ys[ok] @ ranks - n1 * (n1 + 1) / 2) / (n1 * (n - n1)))
    auc = np.concatenate(aucs) if aucs else np.array([])
    return float(auc.mean()) if len(auc) else float("nan")


def subgroup_cbpe(
    risk: Any,
    groups: Any,
    thresholds: Mapping[str, float],
    *,
    n_sim: int = 300,
    random_state: int = 0,
    min_size: int = 50,
) -> dict[str, Any]:
    """Confidence-based performance estimation per group, assuming ``risk`` is calibrated (so it is
    only as good as the last calibration check). Per group: expected event rate (mean risk), expected
    AUROC (:func:`expected_auroc`), and per tier expected sensitivity = sum(risk of alerted) / sum(risk),
    expected PPV = mean risk of alerted, plus the observed alerts per 100. Every figure has
    ``"estimate": True``. Groups with ``n < min_size`` are too_few."""
    p, g, _ = _prepare(risk, groups)
    order = _order(g)
    g = g.astype(str).to_numpy()

    def entry(mask: np.ndarray) -> dict[str, Any]:
        n, q = int(mask.sum()), p[mask]
        if n < min_size:
            return {"too_few": True, "n": n}
        est = {"expected_event_rate": float(q.mean()), "auroc": expected_auroc(q, n_sim, random_state)}
        for tier, t in thresholds.items():
            hit = q >= t
            est[f"sensitivity_{tier}"] = q[hit].sum() / q.sum() if q.sum() > 0 else None
            est[f"ppv_{tier}"] = q[hit].mean() if hit.any() else None
        metrics = {k: {"value": _num(v), "estimate": True} for k, v in est.items()}
        for tier, t in thresholds.items():
            metrics[f"alerts_per_100_{tier}"] = {"value": 100.0 * float(np.mean(q >= t)), "estimate": False}
        return {"too_few": False, "n": n, "estimate": True, "metrics": metrics}

    entries = {k: entry(g == k) for k in order}
    return {
        "kind": "cbpe",
        "estimate": True,
        "thresholds": {k: float(v) for k, v in thresholds.items()},
        "settings": {"n_sim": n_sim, "random_state": random_state, "min_size": min_size},
        "overall": entry(np.ones(len(p), bool)),
        "groups": entries,
        "disparity": {"alert_rate_ratio": _alert_ratio(entries, thresholds)},
    }
