"""Performance and calibration figures against independent computations (scikit-learn, numpy)."""

import time

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from engine import metrics


@pytest.fixture(scope="module")
def reference(demo_bundle_dir) -> pd.DataFrame:
    return pd.read_parquet(demo_bundle_dir / "reference.parquet")


def _ece(labels, risk, bins=10):
    index = np.minimum((risk * bins).astype(int), bins - 1)
    return sum(
        (index == b).mean() * abs(risk[index == b].mean() - labels[index == b].mean())
        for b in range(bins)
        if (index == b).any()
    )


def test_point_estimates_equal_sklearn_on_the_fixture_bundle(reference):
    labels, risk = reference["died_30d"].to_numpy(), reference["expected_risk"].to_numpy(dtype=np.float64)

    summary = metrics.performance(labels, risk, thresholds={"high": 0.5, "medium": 0.25})

    assert summary["auroc"]["value"] == round(roc_auc_score(labels, risk), 4)
    assert summary["auprc"]["value"] == round(average_precision_score(labels, risk), 4)
    assert summary["brier"]["value"] == round(brier_score_loss(labels, risk), 4)
    assert summary["ece"]["value"] == round(_ece(labels, risk), 4)
    assert summary["alerts_per_100"]["high"]["value"] == round(100 * (risk >= 0.5).mean(), 2)
    assert summary["alerts_per_100"]["medium"]["value"] == round(100 * (risk >= 0.25).mean(), 2)
    assert (summary["n"], summary["events"]) == (len(labels), int(labels.sum()))
    bins = summary["reliability"]
    assert len(bins) == 10 and sum(b["count"] for b in bins) == len(labels)
    in_third = (risk >= 0.3) & (risk < 0.4)
    assert bins[3]["count"] == int(in_third.sum())
    assert bins[3]["mean_predicted"] == round(risk[in_third].mean(), 4)
    assert bins[3]["observed_rate"]["value"] == round(labels[in_third].mean(), 4)


def test_ties_are_handled_like_sklearn():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 500)
    risk = np.round(rng.random(500) * 0.3 + labels * 0.2, 1)  # few distinct values: many ties

    point = metrics.weighted_metrics(labels, risk, np.ones(500))

    assert point["auroc"][0] == pytest.approx(roc_auc_score(labels, risk), abs=1e-12)
    assert point["auprc"][0] == pytest.approx(average_precision_score(labels, risk), abs=1e-12)


def test_bootstrap_intervals_are_seeded_and_match_a_resample_by_resample_loop(reference):
    labels, risk = reference["died_30d"].to_numpy(), reference["expected_risk"].to_numpy(dtype=np.float64)
    weights = metrics.bootstrap_weights(len(labels), resamples=5, seed=11)
    vectorised = metrics.weighted_metrics(labels, risk, weights)

    rng = np.random.default_rng(11)
    draws = rng.integers(0, len(labels), size=(5, len(labels)))
    for k in range(5):
        sample = draws[k]
        assert vectorised["auroc"][k] == pytest.approx(roc_auc_score(labels[sample], risk[sample]), abs=1e-12)
        assert vectorised["auprc"][k] == pytest.approx(
            average_precision_score(labels[sample], risk[sample]), abs=1e-12
        )
        assert vectorised["brier"][k] == pytest.approx(
            brier_score_loss(labels[sample], risk[sample]), abs=1e-12
        )

    first = metrics.performance(labels, risk, thresholds={"high": 0.5})
    again = metrics.performance(labels, risk, thresholds={"high": 0.5})
    assert first == again
    auroc = first["auroc"]
    assert auroc["ci_low"] < auroc["value"] < auroc["ci_high"]
    assert 0.02 < auroc["ci_high"] - auroc["ci_low"] < 0.12  # ~1,150 patients: a few AUROC points
    assert first["bootstrap"] == {"resamples": 200, "seed": 0, "level": 0.95, "method": "percentile"}


def test_two_hundred_resamples_take_well_under_a_second(reference):
    labels, risk = reference["died_30d"].to_numpy(), reference["expected_risk"].to_numpy(dtype=np.float64)

    started = time.perf_counter()
    metrics.performance(labels, risk, thresholds={"high": 0.5, "medium": 0.25})

    assert time.perf_counter() - started < 1.0


def test_paired_auroc_difference(reference):
    labels, risk = reference["died_30d"].to_numpy(), reference["expected_risk"].to_numpy(dtype=np.float64)
    other = np.clip(risk + np.random.default_rng(0).normal(0, 0.1, len(risk)), 0, 1)

    difference = metrics.paired_difference(labels, risk, other, "auroc")

    assert difference["value"] == round(roc_auc_score(labels, risk) - roc_auc_score(labels, other), 4)
    assert difference["ci_low"] < difference["value"] < difference["ci_high"]
