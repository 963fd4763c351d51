"""The batched uncertainty and similar-patients blocks equal the per-patient ones they replaced.

The references below are the per-patient code as it was before the batch functions (two
scikit-learn isotonic fits per patient for Venn-Abers, one numpy k-NN pass and one neighbour query
per patient): stored explanations must not change because a worker explains patients in batches.
"""

import json

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import neighbours, uncertainty
from engine import profile as engine_profile
from engine import treeshap as core

# --- the per-patient references ------------------------------------------------------------------


def _reference_knn_distance(scaled, reference, k, exclude=None):
    diff = reference - scaled
    shared = np.isfinite(diff)
    count = shared.sum(axis=1)
    squares = np.where(shared, diff * diff, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        distance = np.sqrt(squares * reference.shape[1] / count)
    distance[count == 0] = np.inf
    if exclude is not None:
        distance[exclude] = np.inf
    k = min(k, len(distance) - (exclude is not None))
    return float(np.partition(distance, k - 1)[:k].mean())


def _reference_uncertainty(profile, row, risk, outcome, opts):
    params = profile.params
    calibration = params["calibration"]
    va = calibration["venn_abers"]
    low, high = uncertainty.venn_abers(np.asarray(va["risks"]), np.asarray(va["labels"]), risk)
    b = uncertainty.calibration_bin(calibration["bins"], risk)
    conformal = params["conformal"]
    outcome_set = uncertainty.conformal_set(risk, conformal["threshold"])
    model = profile.ood
    distance = _reference_knn_distance(
        (np.asarray(row) - model.centre) / model.scale, model.reference, model.k
    )
    percentile = float(
        100.0
        * np.searchsorted(model.reference_distances, distance, side="right")
        / len(model.reference_distances)
    )
    comparable = bool(np.isfinite(distance))
    ood_flag = not comparable or distance > params["ood"]["threshold"]
    names = params["feature_names"]
    missing = [n for n in params["key_features"] if not np.isfinite(row[names.index(n)])]
    reasons = engine_profile._abstain_reasons(
        params, opts, percentile=percentile, ood_flag=ood_flag, missing=missing, comparable=comparable
    )
    return {
        "interval": {"method": "venn-abers", "low": low, "high": high, "units": "probability"},
        "calibration": {
            "bin": [b["low"], b["high"]],
            "n": b["n"],
            "events": b["events"],
            "observed_rate": b["observed"],
            "ci": b["ci"],
            "ci_level": 0.95,
            "summary": engine_profile._calibration_summary(b, outcome),
        },
        "conformal": {
            "level": conformal["nominal"],
            "outcome_set": ["event" if o == 1 else "no event" for o in outcome_set],
            "coverage_measured": conformal["coverage_check_half"],
        },
        "ood": {
            "distance": distance if comparable else None,
            "reference_percentile": percentile,
            "threshold_percentile": params["ood"]["percentile"],
            "flag": bool(ood_flag),
        },
        "key_features": {"names": params["key_features"], "not_measured": missing},
        "abstain": bool(reasons),
        "abstain_reason": " ".join(reasons),
    }


def _reference_similar(index, reference_shap, shap_row, labels, expected_risk, units, names, k):
    k = min(k, index.n_samples_fit_)
    distances, indices = index.kneighbors(np.atleast_2d(shap_row), n_neighbors=k)
    order = np.lexsort((indices[0], np.round(distances[0], 12)))
    result = []
    for i, d in zip(indices[0][order], distances[0][order], strict=True):
        a, b = np.asarray(shap_row, dtype=np.float64), reference_shap[i]
        agree = (np.sign(a) == np.sign(b)) & (a != 0)
        strength = np.where(agree, np.minimum(np.abs(a), np.abs(b)), 0.0)
        top = [j for j in np.argsort(-strength, kind="stable") if strength[j] > 0][:3]
        shared = [{"name": names[j], "direction": "raises risk" if a[j] > 0 else "lowers risk"} for j in top]
        result.append(
            {
                "reference_row": int(i),
                "distance": float(d),
                "outcome": bool(labels[i]),
                "risk": float(expected_risk[i]),
                "unit": units[i],
                "shared_features": shared,
            }
        )
    events = sum(n["outcome"] for n in result)
    return {"k": len(result), "events": int(events), "neighbours": result}


# --- Venn-Abers: the table against the scikit-learn refit ----------------------------------------


def _assert_table_equals_refit(risks, labels, queries):
    table = uncertainty.venn_abers_table(risks, labels)
    got = uncertainty.venn_abers_many(table, queries)
    expected = np.array([uncertainty.venn_abers(risks, labels, q) for q in queries]).reshape(-1, 2)
    assert got.shape == (len(queries), 2)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def _positions(risks, extra):
    """Every kind of position a new risk can take: at each calibration risk, between neighbours,
    below all, above all, and others."""
    distinct = np.unique(risks)
    queries = [*distinct, *extra]
    if len(distinct):
        queries += [distinct[0] - 0.05, distinct[-1] + 0.05, *((distinct[1:] + distinct[:-1]) / 2)]
    return np.asarray(queries, dtype=np.float64)


@settings(max_examples=60, deadline=None)
@given(
    grid=st.integers(1, 12),
    labels=st.lists(st.integers(0, 1), min_size=0, max_size=40),
    data=st.data(),
)
def test_venn_abers_table_equals_the_refit_with_ties(grid, labels, data):
    # Risks on a coarse grid, so many calibration patients share a risk (scikit-learn pools them).
    cells = data.draw(st.lists(st.integers(0, grid), min_size=len(labels), max_size=len(labels)))
    risks = np.asarray(cells, dtype=np.float64) / grid
    extra = data.draw(st.lists(st.floats(-0.5, 1.5), max_size=5))
    _assert_table_equals_refit(risks, np.asarray(labels), _positions(risks, extra))


@pytest.mark.parametrize("n", [1, 2, 3, 7, 2000])
def test_venn_abers_table_equals_the_refit_on_continuous_risks(n):
    rng = np.random.default_rng(n)
    risks = rng.beta(2, 5, n)
    labels = (rng.uniform(size=n) < risks).astype(int)
    queries = _positions(risks, rng.uniform(0, 1, 20))
    if n > 50:  # every position kind, not all 4,000 of them
        queries = rng.choice(queries, 400, replace=False)
    _assert_table_equals_refit(risks, labels, queries)


def test_venn_abers_of_an_empty_calibration_set_is_the_whole_range():
    table = uncertainty.venn_abers_table(np.array([]), np.array([]))
    assert uncertainty.venn_abers_many(table, [0.3]).tolist() == [[0.0, 1.0]]
    assert uncertainty.venn_abers(np.array([]), np.array([]), 0.3) == (0.0, 1.0)


def test_venn_abers_risks_closer_than_the_pooling_tolerance_equal_the_refit():
    # scikit-learn pools risks less than 1e-15 apart into the run's first one; a new risk that close
    # to a calibration risk changes the runs, and is answered by the reference.
    rng = np.random.default_rng(7)
    base = rng.uniform(0, 1, 30)
    risks = np.concatenate([base, base[:10] + 2.2e-16, base[:5] + 6.6e-16, rng.uniform(0, 3e-15, 8)])
    labels = rng.integers(0, 2, len(risks))
    queries = np.concatenate([risks, risks + 2.2e-16, risks - 2.2e-16, risks + 1.2e-15, [1e-16, 2e-15]])
    _assert_table_equals_refit(risks, labels, queries)


def test_venn_abers_interval_of_a_well_calibrated_set_brackets_the_risk():
    # The values a clinician reads: p0 <= p1, a narrow interval where data are dense.
    rng = np.random.default_rng(0)
    risks = rng.uniform(0, 1, 4000)
    labels = (rng.uniform(0, 1, 4000) < risks).astype(int)
    ((low, high),) = uncertainty.venn_abers_many(uncertainty.venn_abers_table(risks, labels), [0.5])
    assert 0.45 < low <= high < 0.55
    assert (low, high) == pytest.approx(uncertainty.venn_abers(risks, labels, 0.5), abs=1e-12)


# --- the OOD distance ------------------------------------------------------------------------------


@pytest.mark.parametrize("features", [1, 5, 8, 22, 130])
def test_ood_distances_are_the_numpy_formula_to_the_bit(features):
    # Column-major, like every reference matrix pandas hands over: numpy then sums the squares
    # feature by feature, and so does the kernel (a row-major copy gives the same figures).
    rng = np.random.default_rng(features)
    reference = np.asfortranarray(rng.normal(0, 1, (300, features)))
    reference[rng.uniform(size=reference.shape) < 0.2] = np.nan
    model = uncertainty.ood_fit(reference, k=10)
    loo = [_reference_knn_distance(model.reference[i], model.reference, 10, exclude=i) for i in range(300)]
    assert model.reference_distances.tolist() == sorted(loo)
    row_major = uncertainty.ood_fit(np.ascontiguousarray(reference), k=10)
    assert row_major.reference_distances.tolist() == model.reference_distances.tolist()

    rows = rng.normal(0, 2, (50, features))
    rows[rng.uniform(size=rows.shape) < 0.3] = np.nan
    rows[0] = np.nan  # nothing measured: no distance
    distances, percentiles = uncertainty.ood_scores(model, rows)
    expected = [_reference_knn_distance((r - model.centre) / model.scale, model.reference, 10) for r in rows]
    assert distances.tolist() == expected
    assert distances[0] == np.inf and percentiles[0] == 100.0
    assert uncertainty.ood_score(model, rows[1]) == (distances[1], percentiles[1])


# --- whole blocks on a profile fitted on the demo bundle --------------------------------------------


@pytest.fixture(scope="module")
def demo(demo_bundle_dir):
    spec = yaml.safe_load((demo_bundle_dir / "bundle.yaml").read_text())
    features = [f for f in spec["features"] if f.get("decision_time", True)]
    names = [f["name"] for f in features]
    booster = xgb.Booster()
    booster.load_model(demo_bundle_dir / "model.json")
    background = pd.read_parquet(demo_bundle_dir / "background.parquet")[names].to_numpy(dtype=np.float64)
    reference = pd.read_parquet(demo_bundle_dir / "reference.parquet")
    explainer = core.tree_explainer(booster, background)

    def predict_risk(rows):
        margin = booster.predict(xgb.DMatrix(rows, feature_names=names), output_margin=True)
        return np.asarray(core.sigmoid(margin), dtype=np.float64)

    label = spec["reference"]["label"]
    params, reference_shap = engine_profile.profile_fit(
        explainer=explainer,
        reference=reference,
        feature_names=names,
        features=features,
        label=label,
        predict_risk=predict_risk,
    )
    nan = np.full(len(names), np.nan)
    profile = engine_profile.profile_load(params, reference_shap, reference, label, nan, nan)
    rows = reference[names].to_numpy(dtype=np.float64)[::4].copy()
    key = [names.index(n) for n in params["key_features"]]
    rows[1, key[:3]] = np.nan  # three key inputs not measured: abstains
    rows[2, :] = np.nan  # nothing measured
    rows[3] = rows[3] * 25  # far from every reference patient: out of distribution
    risks = predict_risk(rows)
    calibration = params["calibration"]["venn_abers"]["risks"]
    risks[4:8] = calibration[:4]  # equal to calibration risks
    risks[8:10] = min(calibration) / 2, (max(calibration) + 1) / 2  # below and above them all
    return profile, rows, risks, core.explain(explainer, rows).values


def test_fitted_reference_distances_are_the_per_patient_ones(demo):
    # The stored OOD figures of a version (its reference's leave-one-out distances) do not change.
    profile = demo[0]
    model = profile.ood
    loo = [
        _reference_knn_distance(model.reference[i], model.reference, model.k, exclude=i) for i in range(1147)
    ]
    assert profile.params["ood"]["reference_distances"] == sorted(loo)
    assert profile.params["ood"]["threshold"] == float(np.percentile(sorted(loo), 99.0))


def test_batched_uncertainty_equals_the_per_patient_reference(demo):
    profile, rows, risks, _ = demo
    opts = profile.options()

    batch = engine_profile.patients_uncertainty(profile, rows, risks, "death within 30 days", opts)

    assert len(batch) == len(rows) == 287
    for i, (row, risk) in enumerate(zip(rows, risks, strict=True)):
        expected = _reference_uncertainty(profile, row, float(risk), "death within 30 days", opts)
        got = batch[i]
        assert got["interval"]["low"] == pytest.approx(expected["interval"]["low"], abs=1e-12)
        assert got["interval"]["high"] == pytest.approx(expected["interval"]["high"], abs=1e-12)
        interval = {
            **got["interval"],
            "low": expected["interval"]["low"],
            "high": expected["interval"]["high"],
        }
        assert {**got, "interval": interval} == expected
        assert (
            engine_profile.patient_uncertainty(profile, row, float(risk), "death within 30 days", opts) == got
        )
    # The rows built to abstain do, for the reason a clinician is shown.
    assert (
        batch[1]["abstain"]
        and "of the 5 most influential inputs are not measured" in batch[1]["abstain_reason"]
    )
    # Nothing in common with the reference patients: no distance (never an infinity, which a JSON
    # column refuses), flagged, and the abstention says why.
    assert (
        batch[2]["ood"]["distance"] is None
        and batch[2]["ood"]["flag"]
        and batch[2]["key_features"]["not_measured"] == (profile.params["key_features"])
    )
    assert "shares too few measured inputs" in batch[2]["abstain_reason"]
    json.dumps(batch, allow_nan=False)  # every figure is storable
    assert (
        batch[3]["ood"]["flag"] and batch[3]["ood"]["reference_percentile"] == 100.0 and batch[3]["abstain"]
    )
    assert sum(b["abstain"] for b in batch) < len(batch) // 4


def test_batched_similar_patients_equal_the_per_patient_reference(demo):
    profile, _, _, shap_rows = demo
    shap_rows = np.vstack([shap_rows, profile.reference_shap[:3]])  # a reference patient itself: distance 0
    opts = {**profile.options(), "neighbours_k": 7}

    batch = engine_profile.patients_similar(profile, shap_rows, "death within 30 days", opts)

    names = profile.params["feature_names"]
    for shap_row, got in zip(shap_rows, batch, strict=True):
        expected = _reference_similar(
            profile.index,
            profile.reference_shap,
            shap_row,
            profile.labels,
            profile.expected_risk,
            profile.units,
            names,
            7,
        )
        expected["summary"] = (
            f"{expected['events']} of 7 similar patients had the outcome (death within 30 days)."
        )
        expected["space"] = "SHAP (log-odds), euclidean"
        assert got == expected
        assert engine_profile.patient_similar(profile, shap_row, "death within 30 days", opts) == got
    assert [n["reference_row"] for n in batch[-1]["neighbours"]][0] == 2 and batch[-1]["neighbours"][0][
        "distance"
    ] == 0


def test_similar_patients_at_equal_distance_keep_the_reference_order():
    # Duplicated reference patients are at exactly the same distance: closest first, then by row.
    rng = np.random.default_rng(3)
    base = rng.normal(0, 1, (40, 6))
    reference_shap = np.vstack([base, base[::-1], base[:10]])
    labels = rng.integers(0, 2, len(reference_shap))
    risks = rng.uniform(0, 1, len(reference_shap))
    units = [f"U{i % 4}" for i in range(len(reference_shap))]
    names = [f"f{j}" for j in range(6)]
    index = neighbours.neighbour_index(reference_shap)
    queries = np.vstack([base[:5], rng.normal(0, 1, (5, 6)), np.zeros((1, 6))])

    batch = neighbours.similar_patients_many(
        index=index,
        reference_shap=reference_shap,
        shap_rows=queries,
        labels=labels,
        expected_risk=risks,
        units=units,
        names=names,
        k=9,
    )

    for query, got in zip(queries, batch, strict=True):
        assert got == _reference_similar(index, reference_shap, query, labels, risks, units, names, 9)
    assert [n["reference_row"] for n in batch[0]["neighbours"][:3]] == [0, 40 + 39, 80]
