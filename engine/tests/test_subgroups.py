"""Per-subgroup metrics, flags and monitoring figures (engine.subgroups, engine.subgroup_flags)."""

import json

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import equalized_odds_difference
from scipy.special import expit, logit
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)

from engine.subgroup_flags import (
    disparity_flags,
    expected_auroc,
    sort_by_disparity,
    subgroup_burden,
    subgroup_cbpe,
)
from engine.subgroups import (
    Subgroup,
    assign_groups,
    calibration_intercept,
    calibration_slope,
    expected_calibration_error,
    subgroup_metrics,
)

THRESHOLDS = {"high": 0.5, "medium": 0.25}


def _walk_plain(obj):
    """Every leaf is a plain Python scalar (no numpy types, no NaN)."""
    if isinstance(obj, dict):
        assert all(isinstance(k, str) for k in obj)
        for v in obj.values():
            _walk_plain(v)
    elif isinstance(obj, list):
        for v in obj:
            _walk_plain(v)
    else:
        assert obj is None or type(obj) in (str, int, float, bool), (obj, type(obj))
        if type(obj) is float:
            assert np.isfinite(obj)


@pytest.fixture(scope="module")
def cohort():
    """2,000 patients with calibrated risk; B's risk doubled, C's risk reversed (worse than chance),
    D too small to report."""
    rng = np.random.default_rng(7)
    groups = np.array(["A"] * 800 + ["B"] * 800 + ["C"] * 370 + ["D"] * 30)
    true_risk = rng.beta(2, 5, len(groups))
    y = (rng.random(len(groups)) < true_risk).astype(int)
    risk = true_risk.copy()
    risk[groups == "B"] = np.minimum(2 * risk[groups == "B"], 0.99)
    c = groups == "C"
    # C's risks in reverse order of the truth: the same values (so the same mean risk), no discrimination
    ranks = np.argsort(np.argsort(-true_risk[c]))
    risk[c] = np.sort(risk[c])[ranks]
    shap = rng.normal(size=(len(groups), 3))
    result = subgroup_metrics(
        y, risk, pd.Series(groups), THRESHOLDS, n_boot=20, shap=shap, feature_names=["hr", "lactate", "age"]
    )
    return {"y": y, "risk": risk, "groups": groups, "shap": shap, "result": result}


def test_band_edges():
    spec = Subgroup(column="age", label="Age band", protected=True, bands=[18, 45, 65, 80])
    ages = pd.Series([0, 17, 17.9, 18, 44, 44.5, 45, 64, 65, 79, 80, 101, None])
    got = assign_groups(ages, spec)
    assert list(got.astype(str)) == [
        "<18", "<18", "<18", "18-44", "18-44", "18-44", "45-64", "45-64", "65-79", "65-79", "80+", "80+",
        "not recorded",
    ]  # fmt: skip
    assert list(got.cat.categories) == ["<18", "18-44", "45-64", "65-79", "80+", "not recorded"]
    assert got.index.equals(ages.index)


def test_categorical_values_and_labels():
    binary = pd.Series([0, 1, None, 1.0])  # float column because of the missing value
    assert list(assign_groups(binary, Subgroup("sex", "Sex")).astype(str)) == ["0", "1", "not recorded", "1"]
    mapped = assign_groups(binary, Subgroup("sex", "Sex", value_labels={0: "female", 1: "male"}))
    assert list(mapped.astype(str)) == ["female", "male", "not recorded", "male"]
    flags = assign_groups(
        pd.Series([True, False, pd.NA], dtype="boolean"), Subgroup("ventilated", "Ventilated")
    )
    assert list(flags.astype(str)) == ["True", "False", "not recorded"]
    text = assign_groups(
        pd.Series(["white", "black", np.nan]), Subgroup("ethnicity", "Ethnicity", protected=True)
    )
    assert list(text.cat.categories) == ["black", "white", "not recorded"]


def test_point_figures_equal_sklearn_on_group_rows(cohort):
    y, risk, groups, result = cohort["y"], cohort["risk"], cohort["groups"], cohort["result"]
    entries = {"overall": (result["overall"], np.ones(len(y), bool))}
    entries |= {g: (result["groups"][g], groups == g) for g in ["A", "B", "C"]}
    for name, (entry, mask) in entries.items():
        yy, pp, m = y[mask], risk[mask], entry["metrics"]
        assert entry["too_few"] is False
        assert (entry["n"], entry["events"]) == (int(mask.sum()), int(yy.sum())), name
        assert m["auroc"]["value"] == pytest.approx(roc_auc_score(yy, pp), abs=1e-12)
        assert m["auprc"]["value"] == pytest.approx(average_precision_score(yy, pp), abs=1e-12)
        assert m["brier"]["value"] == pytest.approx(brier_score_loss(yy, pp), abs=1e-12)
        assert m["calibration_in_large"]["value"] == pytest.approx(pp.mean() - yy.mean(), abs=1e-12)
        for tier, t in THRESHOLDS.items():
            assert m[f"sensitivity_{tier}"]["value"] == pytest.approx(recall_score(yy, pp >= t), abs=1e-12)
            assert m[f"ppv_{tier}"]["value"] == pytest.approx(precision_score(yy, pp >= t), abs=1e-12)
            assert m[f"alerts_per_100_{tier}"]["value"] == pytest.approx(100 * np.mean(pp >= t), abs=1e-12)
        for key, fig in m.items():
            if "ci_low" in fig:
                assert fig["ci_low"] is not None and fig["ci_low"] <= fig["ci_high"], (name, key)
        assert m["auroc"]["ci_low"] - 0.05 < m["auroc"]["value"] < m["auroc"]["ci_high"] + 0.05
        mean_abs = np.abs(cohort["shap"][mask]).mean(axis=0)
        assert list(entry["mean_abs_shap"]) == ["hr", "lactate", "age"]
        assert list(entry["mean_abs_shap"].values()) == pytest.approx(mean_abs)


def test_calibration_helpers():
    rng = np.random.default_rng(3)
    p = rng.beta(2, 5, 3000)
    y = (rng.random(3000) < np.minimum(p * 1.5, 1)).astype(int)
    # ECE against a plain loop over 10 equal-width bins
    bins = np.minimum((p * 10).astype(int), 9)
    loop = sum(
        (bins == b).mean() * abs(p[bins == b].mean() - y[bins == b].mean())
        for b in range(10)
        if (bins == b).any()
    )
    assert expected_calibration_error(y, p) == pytest.approx(loop, abs=1e-12)
    # slope = unpenalised logistic regression on logit(risk)
    fit = LogisticRegression(C=1e10, tol=1e-10, max_iter=1000).fit(logit(p)[:, None], y)
    assert calibration_slope(y, p) == pytest.approx(fit.coef_[0, 0], abs=1e-4)
    # intercept solves the offset-logistic score equation (slope fixed at 1); risk too low -> positive
    a = calibration_intercept(y, p)
    assert a > 0 and np.sum(y - expit(a + logit(p))) == pytest.approx(0, abs=1e-6)
    assert np.isnan(calibration_slope(np.zeros(10), p[:10])) and np.isnan(
        calibration_intercept(np.ones(10), p[:10])
    )


def test_small_group_is_too_few_with_no_numbers(cohort):
    d = cohort["result"]["groups"]["D"]
    assert d == {"too_few": True, "n": 30, "events": int(cohort["y"][cohort["groups"] == "D"].sum())}
    rows = sort_by_disparity(cohort["result"])
    assert {r["group"] for r in rows} == {"A", "B", "C"}


def test_min_events_floor_and_single_class_group():
    rng = np.random.default_rng(5)
    groups = np.array(["A"] * 150 + ["Z"] * 80)
    risk = rng.uniform(0.05, 0.9, 230)
    y = np.r_[(rng.random(150) < risk[:150]).astype(int), np.zeros(80, int)]  # Z has no events
    res = subgroup_metrics(y, risk, groups, THRESHOLDS, n_boot=5)
    assert res["groups"]["Z"] == {"too_few": True, "n": 80, "events": 0}
    res = subgroup_metrics(y, risk, groups, THRESHOLDS, n_boot=5, min_events=0)
    z = res["groups"]["Z"]["metrics"]
    assert z["auroc"]["value"] is None and z["auroc"]["ci_low"] is None
    assert z["sensitivity_high"]["value"] is None and z["ppv_high"]["value"] == 0.0
    assert z["brier"]["value"] == pytest.approx(brier_score_loss(y[150:], risk[150:], labels=[0, 1]))
    json.dumps(res, allow_nan=False)
    with pytest.raises(ValueError, match="outcomes"):
        subgroup_metrics(None, risk, groups, THRESHOLDS)
    with pytest.raises(ValueError, match="not known yet"):
        subgroup_metrics(np.r_[y[:-1], np.nan], risk, groups, THRESHOLDS, n_boot=1)
    spec = Subgroup("site", "Site", protected=False)
    res = subgroup_metrics(y, risk, groups, THRESHOLDS, n_boot=1, spec=spec)
    assert res["subgroup"] == {"column": "site", "label": "Site", "protected": False}


def test_doubled_risk_flags_b_only(cohort):
    flags = disparity_flags(cohort["result"])
    calib = [f for f in flags if f["kind"] == "calibration_in_large"]
    assert [f["group"] for f in calib] == ["B"]
    assert calib[0]["difference"] > 0.05 and "over-predicts" in calib[0]["message"]
    auroc = [f for f in flags if f["kind"] == "auroc_below_overall"]
    assert [f["group"] for f in auroc] == ["C"]  # C's risk was reversed within the group
    c = cohort["result"]["groups"]["C"]["metrics"]["auroc"]
    overall = cohort["result"]["overall"]["metrics"]["auroc"]
    assert c["ci_high"] < overall["ci_low"]
    assert (auroc[0]["overall_ci_low"], auroc[0]["overall_ci_high"]) == (
        overall["ci_low"],
        overall["ci_high"],
    )
    assert (
        "wholly below the overall" in auroc[0]["message"]
        and f"{overall['ci_low']:.2f}" in auroc[0]["message"]
    )


def test_auroc_flag_needs_the_group_interval_wholly_below_the_overall_interval():
    from engine.subgroup_flags import _auroc_flag

    overall = {"value": 0.80, "ci_low": 0.76, "ci_high": 0.84}
    # upper bound 0.78 is under the overall point (0.80) but inside its interval: the intervals overlap
    overlapping = {"auroc": {"value": 0.72, "ci_low": 0.66, "ci_high": 0.78}}
    assert _auroc_flag("G", overlapping, overall) == []
    apart = {"auroc": {"value": 0.68, "ci_low": 0.62, "ci_high": 0.75}}
    (flag,) = _auroc_flag("G", apart, overall)
    assert flag["ci_high"] < flag["overall_ci_low"] and flag["overall_auroc"] == 0.80
    assert flag["message"] == (
        "AUROC in G is 0.68 (95% CI 0.62-0.75), wholly below the overall 0.80 (95% CI 0.76-0.84)."
    )
    assert _auroc_flag("G", apart, {"value": 0.80, "ci_low": None, "ci_high": None}) == []


def test_equalized_odds_and_alert_ratio_match_fairlearn(cohort):
    y, risk, groups, res = cohort["y"], cohort["risk"], cohort["groups"], cohort["result"]
    big = groups != "D"
    for tier, t in THRESHOLDS.items():
        want = equalized_odds_difference(y[big], risk[big] >= t, sensitive_features=groups[big])
        assert res["disparity"]["equalized_odds_difference"][tier] == pytest.approx(want, abs=1e-12)
        rates = {g: 100 * np.mean(risk[groups == g] >= t) for g in "ABC"}
        ratio = res["disparity"]["alert_rate_ratio"][tier]
        assert ratio["ratio"] == pytest.approx(min(rates.values()) / max(rates.values()))
        assert ratio["highest"] == max(rates, key=rates.get) and ratio["groups_compared"] == ["A", "B", "C"]


def test_alert_rate_ratio_flag_names_lowest_and_highest():
    rng = np.random.default_rng(11)
    groups = np.repeat(["north", "south", "west"], 400)
    risk = np.tile(rng.beta(2, 4, 400), 3)  # identical risk in every group: ratio exactly 1
    fair = disparity_flags(subgroup_burden(risk, groups, THRESHOLDS))
    assert [f for f in fair if f["kind"] == "alert_rate_ratio"] == []
    risk[groups == "west"] *= 0.3
    flags = [
        f
        for f in disparity_flags(subgroup_burden(risk, groups, THRESHOLDS))
        if f["kind"] == "alert_rate_ratio"
    ]
    assert {f["tier"] for f in flags} == {"high", "medium"}
    for f in flags:
        assert f["lowest"] == "west" and f["ratio"] < 0.8 and "west" in f["message"]
        rates = {
            g: 100 * np.mean(risk[groups == g] >= THRESHOLDS[f["tier"]]) for g in ["north", "south", "west"]
        }
        assert f["highest"] == max(rates, key=rates.get)
        assert f["ratio"] == pytest.approx(rates["west"] / max(rates.values()))


def test_burden_with_actions():
    groups = np.repeat(["A", "B", "C"], [60, 60, 10])
    risk = np.r_[np.full(30, 0.6), np.full(30, 0.1), np.full(15, 0.3), np.full(45, 0.1), np.full(10, 0.9)]
    actions = pd.DataFrame(
        {
            "group": ["A"] * 4 + ["B"] * 2 + ["C"],
            "action": ["accept", "dismiss", "dismiss", None, "escalate", "acknowledge", "dismiss"],
            "reason": [None, "already treated", None, None, None, None, "noise"],
        }
    )
    res = subgroup_burden(risk, groups, THRESHOLDS, actions)
    a = res["groups"]["A"]
    assert a["metrics"]["alerts_per_100_high"]["value"] == 50.0
    assert res["groups"]["B"]["metrics"]["alerts_per_100_medium"]["value"] == 25.0
    assert res["groups"]["C"] == {"too_few": True, "n": 10}
    assert a["actions"]["acted_on_share"] == 0.25 and a["actions"]["responded_share"] == 0.75
    assert a["actions"]["override_rate"] == 0.5
    assert a["actions"]["override_rate_by_reason"] == {"already treated": 0.25, "no reason given": 0.25}
    assert res["overall"]["actions"]["alerts_with_actions"] == 7
    assert res["disparity"]["alert_rate_ratio"]["high"]["ratio"] == 0.0
    _walk_plain(res)


def test_cbpe_is_label_free_and_tracks_calibrated_truth():
    rng = np.random.default_rng(2)
    groups = np.repeat(["A", "B"], [900, 600])
    risk = rng.beta(2, 5, 1500)
    y = (rng.random(1500) < risk).astype(int)
    res = subgroup_cbpe(risk, groups, THRESHOLDS, n_sim=200)
    assert res["estimate"] is True
    for g in ["A", "B"]:
        m, q = res["groups"][g]["metrics"], risk[groups == g]
        assert all(fig["estimate"] for k, fig in m.items() if not k.startswith("alerts_per_100"))
        assert m["auroc"]["value"] == pytest.approx(roc_auc_score(y[groups == g], q), abs=0.05)
        hit = q >= THRESHOLDS["medium"]
        assert m["sensitivity_medium"]["value"] == pytest.approx(q[hit].sum() / q.sum())
        assert m["ppv_medium"]["value"] == pytest.approx(q[hit].mean())
    # the rank formula is the same AUROC scikit-learn gives on each simulated draw
    q = risk[:300]
    draws = np.random.default_rng(0).random((50, 300)) < q
    assert expected_auroc(q, n_sim=50, random_state=0) == pytest.approx(
        np.mean([roc_auc_score(d, q) for d in draws])
    )
    _walk_plain(res)


def test_outputs_are_plain_json(cohort):
    _walk_plain(cohort["result"])
    text = json.dumps(cohort["result"], allow_nan=False)
    assert json.loads(text)["groups"]["D"]["too_few"] is True
    json.dumps(disparity_flags(cohort["result"]), allow_nan=False)
    json.dumps(sort_by_disparity(cohort["result"]), allow_nan=False)


def test_sort_by_disparity_orders_largest_first(cohort):
    rows = sort_by_disparity(cohort["result"])
    keys = [abs(r["difference"]) / (100 if r["metric"].startswith("alerts_per_100") else 1) for r in rows]
    assert keys == sorted(keys, reverse=True)
    assert rows[0]["group"] in {"B", "C"}
    assert not {r["metric"] for r in rows} & {"calibration_intercept", "calibration_slope"}
    only = sort_by_disparity(cohort["result"], metrics=["calibration_slope"])
    assert {r["metric"] for r in only} == {"calibration_slope"} and len(only) == 3


def test_sorted_rows_carry_the_intervals(cohort):
    rows = sort_by_disparity(cohort["result"])
    for r in rows:
        fig = cohort["result"]["groups"][r["group"]]["metrics"][r["metric"]]
        whole = cohort["result"]["overall"]["metrics"][r["metric"]]
        assert (r["ci_low"], r["ci_high"]) == (fig["ci_low"], fig["ci_high"])
        assert (r["overall_ci_low"], r["overall_ci_high"]) == (whole["ci_low"], whole["ci_high"])
        assert r["estimate"] is False
    assert any(r["ci_low"] is not None for r in rows)
    estimated = sort_by_disparity(subgroup_cbpe(cohort["risk"], cohort["groups"], THRESHOLDS, n_sim=20))
    assert {r["estimate"] for r in estimated if r["metric"] == "auroc"} == {True}


def test_race_on_the_reference_set_is_grouped_as_monitoring_groups_posted_patients():
    """The model card's groups of a race column meet monitoring's: a code and its text are one OMB
    category; a column with value labels keeps them."""
    race = pd.Series(["white", "2106-3", "Black", "urn:oid:2.16.840.1.113883.6.238|2054-5", np.nan, "other"])
    groups = assign_groups(race, Subgroup("race", "Race", protected=True))
    assert list(groups.astype(str)) == [
        "White",
        "White",
        "Black or African American",
        "Black or African American",
        "not recorded",
        "Other Race",
    ]
    labelled = assign_groups(pd.Series([1, 2]), Subgroup("race", "Race", value_labels={1: "a", 2: "b"}))
    assert list(labelled.astype(str)) == ["a", "b"]


def test_sensitivity_and_ppv_equal_scikit_learn_to_the_last_bit_and_nan_when_undefined():
    from engine.subgroups import _metric_functions

    funcs = _metric_functions({"high": 0.5})
    rng = np.random.default_rng(3)
    cases = [(rng.integers(0, 2, n), rng.random(n)) for n in (1, 2, 7, 50, 333)]
    cases += [(np.zeros(9, int), rng.random(9)), (np.ones(9, int), np.full(9, 0.1))]  # no events; no alert
    for y, p in cases:
        alerts = (p >= 0.5).astype(int)
        for name, reference in (("sensitivity_high", recall_score), ("ppv_high", precision_score)):
            expected = reference(y, alerts, zero_division=np.nan)
            got = funcs[name](y, p)
            assert (np.isnan(got) and np.isnan(expected)) or got == expected, (name, y, p)
