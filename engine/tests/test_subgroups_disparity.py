"""Mean |SHAP| intervals per subgroup and the override-rate disparity (engine.subgroup_shap,
engine.subgroup_flags)."""

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import MetricFrame
from sklearn.metrics import roc_auc_score

from engine.subgroup_flags import disparity_flags, subgroup_burden
from engine.subgroups import subgroup_metrics
from engine.tests.test_subgroups import THRESHOLDS, _walk_plain


def test_mean_abs_shap_intervals_equal_fairlearn_metricframe_bootstrap():
    """Mean |SHAP| per group with the 95% interval fairlearn's MetricFrame gives over the SHAP columns
    (same n_boot and random_state, so the same resamples as every other interval)."""
    rng = np.random.default_rng(4)
    groups = np.repeat(["A", "B", "C"], [140, 100, 60])
    risk = rng.uniform(0.05, 0.95, 300)
    y = (rng.random(300) < risk).astype(int)
    shap = rng.normal(size=(300, 2)) * np.where(groups == "B", 2.0, 1.0)[:, None]
    res = subgroup_metrics(
        y, risk, groups, THRESHOLDS, n_boot=12, random_state=5, shap=shap, feature_names=["hr", "lactate"],
        min_size=10, min_events=1,
    )  # fmt: skip

    def mean_of(y_true, y_pred, values):
        return float(np.mean(values))

    frame = MetricFrame(
        metrics={"hr": mean_of, "lactate": mean_of},
        y_true=y,
        y_pred=risk,
        sensitive_features=pd.Series(groups, name="group"),
        sample_params={"hr": {"values": np.abs(shap[:, 0])}, "lactate": {"values": np.abs(shap[:, 1])}},
        n_boot=12,
        ci_quantiles=[0.025, 0.975],
        random_state=5,
    )
    low, high = frame.by_group_ci
    for g in "ABC":
        entry = res["groups"][g]
        for f in ("hr", "lactate"):
            assert entry["mean_abs_shap"][f] == pytest.approx(frame.by_group.loc[g, f], abs=1e-12)
            ci = entry["mean_abs_shap_ci"][f]
            assert (ci["ci_low"], ci["ci_high"]) == pytest.approx((low.loc[g, f], high.loc[g, f]), abs=1e-12)
            assert ci["ci_low"] < entry["mean_abs_shap"][f] < ci["ci_high"]
    o_low, o_high = frame.overall_ci
    assert res["overall"]["mean_abs_shap_ci"]["hr"]["ci_low"] == pytest.approx(o_low["hr"], abs=1e-12)
    assert res["overall"]["mean_abs_shap_ci"]["lactate"]["ci_high"] == pytest.approx(
        o_high["lactate"], abs=1e-12
    )
    # and the AUROC interval from the same seed equals an independent MetricFrame's
    auroc = MetricFrame(
        metrics=roc_auc_score, y_true=y, y_pred=risk, sensitive_features=pd.Series(groups, name="group"),
        n_boot=12, ci_quantiles=[0.025, 0.975], random_state=5,
    )  # fmt: skip
    for g in "ABC":
        got = res["groups"][g]["metrics"]["auroc"]
        assert (got["ci_low"], got["ci_high"]) == pytest.approx(
            (auroc.by_group_ci[0][g], auroc.by_group_ci[1][g]), abs=1e-12
        )
    _walk_plain(res)


def _dismissals(groups_alerts: dict[str, tuple[int, int]]) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Every patient alerted (risk 0.6); per group (patients, dismissed of their alerts)."""
    groups = np.concatenate([[g] * n for g, (n, _) in groups_alerts.items()])
    rows = [
        {
            "group": g,
            "action": "dismiss" if i < d else "accept",
            "reason": "not_clinically_relevant" if i < d else None,
        }
        for g, (n, d) in groups_alerts.items()
        for i in range(n)
    ]
    return groups, np.full(len(groups), 0.6), pd.DataFrame(rows)


def test_override_rate_gap_is_flagged_with_enough_alerts():
    groups, risk, actions = _dismissals({"A": (60, 30), "B": (60, 6), "C": (60, 12)})
    res = subgroup_burden(risk, groups, THRESHOLDS, actions)
    gap = res["disparity"]["override_rate"]
    assert (gap["highest"], gap["lowest"]) == ("A", "B")
    assert gap["difference"] == pytest.approx(0.5 - 0.1) and gap["ratio"] == pytest.approx(0.2)
    (flag,) = [f for f in disparity_flags(res) if f["kind"] == "override_rate"]
    assert flag["groups"] == ["A", "B"] and flag["margin"] == 0.10
    assert flag["message"] == (
        "Clinicians dismiss 50% of the alerts in A (60 alerts) against 10% in B (60 alerts):"
        " a gap of 40%, over the 10% margin."
    )
    assert [f for f in disparity_flags(res, override_margin=0.45) if f["kind"] == "override_rate"] == []
    # too few alerts in a group to compare: not flagged however large the gap
    few = subgroup_burden(risk, groups, THRESHOLDS, actions, min_alerts=61)
    assert few["disparity"]["override_rate"]["difference"] is None
    assert [f for f in disparity_flags(few) if f["kind"] == "override_rate"] == []
    groups, risk, actions = _dismissals({"A": (60, 9), "B": (60, 6)})  # 15% against 10%: within
    even = subgroup_burden(risk, groups, THRESHOLDS, actions)
    assert even["disparity"]["override_rate"]["difference"] == pytest.approx(0.05)
    assert [f for f in disparity_flags(even) if f["kind"] == "override_rate"] == []
    _walk_plain(res)
