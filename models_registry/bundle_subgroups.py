"""Per-subgroup figures on the reference set of a registered version (issue #18).

Unit and shift are always subgroups; bundle.yaml `subgroups` adds others (CONTRACT.md section 1). For
each, engine.subgroups.subgroup_metrics (fairlearn MetricFrame over scikit-learn metrics, bootstrap
95% intervals) and engine.subgroup_flags.disparity_flags; the flags become the `subgroup_disparity`
registration check. Plain Python, no Django: the caller (models_registry.subgroups) passes the
settings. Registration checks the declared columns (check_subgroup_columns) synchronously; the figures
take a bootstrap per subgroup, so a worker computes them right after the version is committed.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from engine.subgroup_flags import disparity_flags
from engine.subgroups import Subgroup, assign_groups, subgroup_metrics
from models_registry.bundle_rules import BundleError
from models_registry.bundle_spec import ALWAYS_SUBGROUPS

# The report is a pure function of the bundle's bytes and these settings; registering the same bundle
# again (a re-upload, every test that registers the fixture bundle) reuses it.
_REPORTS: OrderedDict[str, tuple[dict, dict]] = OrderedDict()
_REPORTS_KEPT = 8


@dataclass(frozen=True)
class SubgroupSettings:
    n_boot: int = 200
    random_state: int = 0
    min_size: int = 50
    min_events: int = 10
    calibration_margin: float = 0.05
    alert_ratio_floor: float = 0.8


def all_subgroups(declared: list[dict]) -> list[dict]:
    """Unit and shift first, then the subgroups bundle.yaml declares, in its order."""
    always = [
        {
            "column": c,
            "label": c.capitalize(),
            "protected": False,
            "bands": None,
            "values": None,
            "model_input": False,
        }
        for c in ALWAYS_SUBGROUPS
    ]
    return [*({**s, "declared": False} for s in always), *({**s, "declared": True} for s in declared)]


def check_subgroup_columns(reference: pd.DataFrame, name: str, declared: list[dict]) -> None:
    for s in declared:
        column = s["column"]
        if column not in reference.columns:
            raise BundleError(f"bundle.yaml subgroup '{column}' names a column that {name} does not have.")
        values = reference[column]
        if s["bands"] and not (
            pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
        ):
            raise BundleError(
                f"bundle.yaml subgroup '{column}' has bands, but {name} column '{column}' "
                "does not hold numbers."
            )


def _value_labels(subgroup: dict, feature: dict | None) -> dict | None:
    """Stored value -> label: bundle.yaml `values`, else a categorical feature's categories, else
    yes/no for a binary feature. Keys are given as text and as numbers (0/1 columns may be float)."""
    labels = subgroup.get("values")
    if labels is None and feature is not None and feature["kind"] == "categorical":
        labels = {str(i): c for i, c in enumerate(feature["categories"])}
    if labels is None and feature is not None and feature["kind"] == "binary":
        labels = {"0": "no", "1": "yes"}
    if labels is None:
        return None
    out: dict = {}
    for key, label in labels.items():
        out[key] = label
        try:
            number = float(key)
        except ValueError:
            continue
        out[number] = label
        if number.is_integer():
            out[int(number)] = label
    return out


def subgroup_report(
    *,
    key: str,
    subgroups: list[dict],
    features: list[dict],
    reference: pd.DataFrame,
    label: str,
    tiers: dict[str, float],
    shap_of: Callable[[], np.ndarray],
    input_names: list[str],
    settings: SubgroupSettings,
) -> tuple[dict, dict]:
    """(report stored with the version, the `subgroup_disparity` check). `key` identifies the bundle;
    `shap_of()` gives the reference set's SHAP values (called only when the report is not memoised)."""
    memo = f"{key}:{json.dumps(asdict(settings), sort_keys=True)}"
    if memo in _REPORTS:
        _REPORTS.move_to_end(memo)
        return _copy(_REPORTS[memo])
    shap = shap_of()
    by_name = {f["name"]: f for f in features}
    labels_of = {f["name"]: f["label"] for f in features}
    y = reference[label].to_numpy(dtype=np.float64)
    risk = reference["expected_risk"].to_numpy(dtype=np.float64)
    feature_labels = [labels_of[n] for n in input_names]
    reports = [
        _subgroup(s, by_name.get(s["column"]), reference, y, risk, tiers, shap, feature_labels, settings)
        for s in subgroups
    ]
    flags = [flag for r in reports for flag in r["flags"]]
    report = {"settings": asdict(settings), "thresholds": dict(tiers), "subgroups": reports}
    check = {
        "passed": True,
        "flagged": bool(flags),
        "flags": flags,
        "subgroups": [s["label"] for s in subgroups],
        "too_few": [
            f"{r['label']}: {g}" for r in reports for g, e in r["result"]["groups"].items() if e["too_few"]
        ],
        "calibration_margin": settings.calibration_margin,
        "alert_ratio_floor": settings.alert_ratio_floor,
    }
    _REPORTS[memo] = _copy((report, check))
    while len(_REPORTS) > _REPORTS_KEPT:
        _REPORTS.popitem(last=False)
    return _copy(_REPORTS[memo])


def _subgroup(
    s: dict,
    feature: dict | None,
    reference: pd.DataFrame,
    y: np.ndarray,
    risk: np.ndarray,
    tiers: dict[str, float],
    shap: np.ndarray,
    feature_labels: list[str],
    settings: SubgroupSettings,
) -> dict:
    """One subgroup's stored report: its figures (engine.subgroups) and its flags, named after it."""
    spec = Subgroup(
        column=s["column"],
        label=s["label"],
        protected=s["protected"],
        bands=s["bands"],
        value_labels=_value_labels(s, feature),
    )
    result = subgroup_metrics(
        y,
        risk,
        assign_groups(reference[s["column"]], spec),
        tiers,
        n_boot=settings.n_boot,
        random_state=settings.random_state,
        min_size=settings.min_size,
        min_events=settings.min_events,
        shap=shap,
        feature_names=feature_labels,
        spec=spec,
    )
    found = disparity_flags(
        result, calibration_margin=settings.calibration_margin, alert_ratio_floor=settings.alert_ratio_floor
    )
    for flag in found:
        flag.update(subgroup=s["label"], column=s["column"], message=f"{s['label']}: {flag['message']}")
    return {
        **{k: v for k, v in s.items() if k != "values"},
        # PostgreSQL's jsonb does not keep key order: the groups' order is kept here.
        "group_order": list(result["groups"]),
        "result": result,
        "flags": found,
    }


def _copy(pair: tuple[dict, dict]) -> tuple[dict, dict]:
    """A fresh copy through JSON (also proves the figures are plain JSON: no NaN, no numpy types)."""
    report, check = pair
    return json.loads(json.dumps(report, allow_nan=False)), json.loads(json.dumps(check, allow_nan=False))
