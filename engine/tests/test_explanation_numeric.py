"""The numerical core of the explanation engine, without Django: uncertainty, neighbours,
stability and cohort aggregation."""

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from engine import cohort, neighbours, stability, uncertainty
from engine import treeshap as core


def test_wilson_interval_matches_the_textbook_value():
    low, high = uncertainty.wilson_interval(50, 100)
    assert (low, high) == pytest.approx((0.4038, 0.5962), abs=1e-4)
    assert uncertainty.wilson_interval(0, 0) == (0.0, 1.0)


def test_conformal_outcome_sets_cover_held_out_reference_patients_near_nominal(demo_bundle_dir):
    reference = pd.read_parquet(demo_bundle_dir / "reference.parquet")
    risks, labels = reference["expected_risk"].to_numpy(), reference["died_30d"].to_numpy()
    fit, check = uncertainty.split_halves(labels, seed=3)
    assert not set(fit) & set(check) and len(fit) + len(check) == len(reference)

    coverages = {}
    for alpha in (0.10, 0.20):
        threshold = uncertainty.conformal_threshold(risks[fit], labels[fit], alpha)
        coverages[alpha] = uncertainty.conformal_coverage(risks[check], labels[check], threshold)
        sets = [uncertainty.conformal_set(r, threshold) for r in risks[check]]
        # Informative: some patients get a single outcome, not always "either".
        assert any(len(s) == 1 for s in sets)
    # Split conformal guarantees >= nominal in expectation; on ~570 held-out patients allow +-4 points.
    assert 0.86 <= coverages[0.10] <= 0.96
    assert 0.76 <= coverages[0.20] <= 0.88


def test_binned_calibration_counts_every_patient_and_brackets_the_observed_rate(demo_bundle_dir):
    reference = pd.read_parquet(demo_bundle_dir / "reference.parquet")
    risks, labels = reference["expected_risk"].to_numpy(), reference["died_30d"].to_numpy()

    bins = uncertainty.calibration_bins(risks, labels, n_bins=5)

    assert sum(b["n"] for b in bins) == len(reference)
    assert sum(b["events"] for b in bins) == int(labels.sum())
    for b in bins:
        assert b["ci"][0] <= b["observed"] <= b["ci"][1]
    top = uncertainty.calibration_bin(bins, 0.999)
    assert top is bins[-1] and top["observed"] > bins[0]["observed"]


def test_venn_abers_interval_is_ordered_and_narrow_where_calibration_data_are_dense():
    rng = np.random.default_rng(0)
    risks = rng.uniform(0, 1, 4000)
    labels = (rng.uniform(0, 1, 4000) < risks).astype(int)  # perfectly calibrated scores

    low, high = uncertainty.venn_abers(risks, labels, 0.5)

    assert 0 <= low <= high <= 1
    assert high - low < 0.05
    assert low - 0.1 < 0.5 < high + 0.1


def test_ood_flags_a_patient_far_from_the_reference():
    rng = np.random.default_rng(1)
    reference = rng.normal(0, 1, (500, 6))
    reference[rng.uniform(size=reference.shape) < 0.1] = np.nan  # some values not measured
    model = uncertainty.ood_fit(reference, k=10)

    _, typical = uncertainty.ood_score(model, np.zeros(6))
    distance, far = uncertainty.ood_score(model, np.array([8.0, -8, 8, -8, 8, np.nan]))

    assert typical < 50
    assert far == 100.0 and distance > model.reference_distances[-1]


def test_similar_patients_match_a_brute_force_neighbour_search():
    rng = np.random.default_rng(2)
    reference_shap = rng.normal(0, 1, (300, 8))
    labels = rng.integers(0, 2, 300)
    risks = rng.uniform(0, 1, 300)
    units = [f"U{i % 3}" for i in range(300)]
    names = [f"f{j}" for j in range(8)]
    query = rng.normal(0, 1, 8)

    result = neighbours.similar_patients(
        index=neighbours.neighbour_index(reference_shap),
        reference_shap=reference_shap,
        shap_row=query,
        labels=labels,
        expected_risk=risks,
        units=units,
        names=names,
        k=10,
    )

    brute = np.argsort(np.sqrt(((reference_shap - query) ** 2).sum(axis=1)), kind="stable")[:10]
    assert [n["reference_row"] for n in result["neighbours"]] == brute.tolist()
    assert [n["outcome"] for n in result["neighbours"]] == [bool(labels[i]) for i in brute]
    assert result["events"] == int(labels[brute].sum())
    assert [n["unit"] for n in result["neighbours"]] == [units[i] for i in brute]
    first = result["neighbours"][0]
    for shared in first["shared_features"]:
        j = names.index(shared["name"])
        assert np.sign(query[j]) == np.sign(reference_shap[brute[0], j])


@pytest.fixture(scope="module")
def step_model():
    """Six features, each a step at 1.0 with its own weight; four that do nothing. Most training
    and background values lie below the step, so a value just above or below it changes |SHAP|."""
    rng = np.random.default_rng(4)
    x = rng.uniform(0, 1.11, (4000, 10))
    weights = np.array([3.0, 2.5, 2.0, 1.5, 1.0, 0.5, 0, 0, 0, 0])
    logit = ((x > 1.0) * weights).sum(axis=1) - 1.0
    y = (rng.uniform(size=4000) < 1 / (1 + np.exp(-logit))).astype(int)
    model = xgb.XGBClassifier(n_estimators=80, max_depth=2, learning_rate=0.3, random_state=0)
    model.fit(x, y)
    explainer = core.tree_explainer(model.get_booster(), x[:200])
    return explainer


def _stability_of(explainer, row, n=20):
    precision = stability.precision_for([{"kind": "numeric", "unit": "", "precision": None}] * 10)
    perturbed = stability.perturb(row, precision, n, seed=11)
    values = core.explain(explainer, np.vstack([row, perturbed])).values
    return stability.stability_summary(values[0], values[1:], [f"f{j}" for j in range(10)], threshold=0.6)


def test_stability_flag_fires_for_values_on_the_models_steps_and_not_far_from_them(step_model):
    on_the_steps = np.array([1.0] * 6 + [0.5] * 4)
    far_from_them = np.array([1.1, 1.1, 1.1, 0.3, 0.3, 0.3, 0.5, 0.5, 0.5, 0.5])

    unstable = _stability_of(step_model, on_the_steps)
    stable = _stability_of(step_model, far_from_them)

    assert unstable["unstable"] is True and unstable["agreement"] < 0.6
    assert unstable["changed_features"]
    assert stable["unstable"] is False and stable["agreement"] >= 0.9
    assert stable["perturbations"] == 20 and stable["top_k"] == 5


def test_perturbation_keeps_missing_values_and_exact_features():
    precision = stability.precision_for(
        [
            {"kind": "numeric", "unit": "years"},
            {"kind": "numeric", "unit": "mmHg"},
            {"kind": "binary"},
            {"kind": "numeric", "unit": "mg/dL", "precision": 0.3},
        ]
    )
    rows = stability.perturb(np.array([67.0, 70.0, 1.0, np.nan]), precision, 50, seed=1)

    assert np.all(rows[:, 0] == 67.0) and np.all(rows[:, 2] == 1.0)
    assert np.all(np.isnan(rows[:, 3]))
    assert 0.5 < rows[:, 1].std() < 4.0  # +-2 mmHg monitor precision


def test_cohort_aggregate_equals_pandas_and_slices_by_hospital_time():
    assert cohort.slice_of(datetime(2026, 1, 5, 11, 59, tzinfo=UTC), "America/New_York") == (
        "night",
        date(2026, 1, 5),
    )
    assert cohort.slice_of(datetime(2026, 1, 5, 12, 0, tzinfo=UTC), "America/New_York")[0] == "day"
    assert cohort.slice_of(datetime(2026, 1, 5, 3, 0, tzinfo=UTC), "America/New_York")[1] == date(2026, 1, 4)

    rng = np.random.default_rng(5)
    shap = rng.normal(0, 1, (50, 3))
    slices = pd.DataFrame(
        {
            "unit": rng.choice(["MICU", "CCU"], 50),
            "shift": rng.choice(["day", "night"], 50),
            "day": rng.choice([date(2026, 1, 4), date(2026, 1, 5)], 50),
        }
    )
    out = cohort.aggregate(shap, slices, ["a", "b", "c"]).set_index(["feature", "unit", "shift", "day"])

    for j, name in enumerate(["a", "b", "c"]):
        frame = slices.assign(v=shap[:, j])
        expected = frame.groupby(["unit", "shift", "day"])["v"]
        for key, group in expected:
            row = out.loc[(name, *key)]
            assert row["count"] == len(group)
            assert row["total"] == pytest.approx(group.sum())
            assert row["total_abs"] == pytest.approx(group.abs().sum())


def test_slices_of_many_times_are_slice_of_each_across_daylight_saving_changes():
    # Every 7 minutes over both 2026 changes in New York and the half-hour one of Lord Howe Island.
    times = [datetime(2026, 3, 7, tzinfo=UTC) + timedelta(minutes=7 * i) for i in range(900)]
    times += [datetime(2026, 10, 31, tzinfo=UTC) + timedelta(minutes=7 * i) for i in range(900)]
    times += [datetime(2026, 4, 4, 12, tzinfo=UTC) + timedelta(minutes=7 * i) for i in range(300)]
    for zone in ("America/New_York", "Australia/Lord_Howe", "UTC"):
        shifts, days = cohort.slices_of(times, zone)
        assert list(zip(shifts, days, strict=True)) == [cohort.slice_of(t, zone) for t in times]
    assert cohort.priorities([3, 1]).tolist() == [cohort.priority(3), cohort.priority(1)]


def test_bottom_k_sample_is_the_same_whatever_the_order_or_the_chunking():
    frame = pd.DataFrame(
        {"unit": "MICU", "shift": "day", "day": date(2026, 1, 5), "prediction_id": range(100)}
    ).assign(priority=lambda f: [cohort.priority(i) for i in f["prediction_id"]])

    whole = set(cohort.bottom_k(frame, 10)["prediction_id"])
    halves = pd.concat([cohort.bottom_k(frame.iloc[:50], 10), cohort.bottom_k(frame.iloc[50:], 10)])
    shuffled = frame.sample(frac=1, random_state=3)

    assert set(cohort.bottom_k(halves, 10)["prediction_id"]) == whole
    assert set(cohort.bottom_k(shuffled, 10)["prediction_id"]) == whole
    assert len(whole) == 10


def test_a_headline_is_reconciled_on_the_figures_as_shown():
    from engine.headline import Relation, horizon_words, reconcile

    # 37% beside 38%-40% reads as a contradiction: below its calibrated range.
    assert reconcile(0.372, 0.378, 0.401).relation == Relation.BELOW
    assert reconcile(0.58, 0.54, 0.55).relation == Relation.ABOVE
    # 37.6% prints as 38%: inside 38%-40% as the reader sees it, so no correction is claimed.
    assert reconcile(0.376, 0.378, 0.401) == reconcile(0.38, 0.38, 0.40)
    assert reconcile(0.376, 0.378, 0.401).relation == Relation.INSIDE
    assert horizon_words(720) == "within 30 days" and horizon_words(48) == "within 48 hours"
