"""Realised metrics against sklearn, the vectorised bootstrap, and CBPE against realised AUROC."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from engine import performance

# CBPE on calibrated data: the expected AUROC is within this of the realised one (n = 20,000).
CBPE_TOLERANCE = 0.01


def _calibrated(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    scores = rng.beta(1.5, 5, n)
    return scores, rng.binomial(1, scores).astype(float)


def test_point_estimates_equal_sklearn():
    rng = np.random.default_rng(11)
    scores, labels = _calibrated(rng, 3000)
    scores = np.round(scores, 2)  # ties, as real scores rounded for display have
    result = performance.performance(scores, labels, bootstrap=50)
    assert result["auroc"] == pytest.approx(roc_auc_score(labels, scores))
    assert result["auprc"] == pytest.approx(average_precision_score(labels, scores))
    assert result["brier"] == pytest.approx(brier_score_loss(labels, scores))
    bins = np.minimum((scores * 10).astype(int), 9)
    gaps = [abs(labels[bins == b].mean() - scores[bins == b].mean()) * (bins == b).mean() for b in set(bins)]
    ece = sum(gaps)
    assert result["ece"] == pytest.approx(ece)
    low, high = result["ci"]["auroc"]
    assert low < result["auroc"] < high


def test_vectorised_bootstrap_rows_equal_sklearn_per_resample():
    rng = np.random.default_rng(12)
    scores, labels = _calibrated(rng, 400)
    scores = np.round(scores, 2)
    index = rng.integers(0, 400, size=(5, 400))
    s, y = scores[index], labels[index]
    assert performance.auroc_rows(s, y) == pytest.approx([roc_auc_score(y[i], s[i]) for i in range(5)])
    assert performance.average_precision_rows(s, y) == pytest.approx(
        [average_precision_score(y[i], s[i]) for i in range(5)]
    )


def test_bootstrap_is_seeded():
    rng = np.random.default_rng(13)
    scores, labels = _calibrated(rng, 500)
    first = performance.performance(scores, labels, bootstrap=100, seed=1)["ci"]
    assert performance.performance(scores, labels, bootstrap=100, seed=1)["ci"] == first
    assert performance.performance(scores, labels, bootstrap=100, seed=2)["ci"] != first


def test_cbpe_auroc_is_within_tolerance_of_realised_on_calibrated_data():
    rng = np.random.default_rng(14)
    ref_scores, ref_labels = _calibrated(rng, 5000)
    calibrator = performance.calibrator_fit(ref_scores, ref_labels)
    scores, labels = _calibrated(rng, 20_000)
    estimate = performance.cbpe(scores, calibrator)
    realised = performance.performance(scores, labels, bootstrap=20)
    assert estimate["estimate"] is True
    assert abs(estimate["auroc"] - realised["auroc"]) < CBPE_TOLERANCE
    assert abs(estimate["brier"] - realised["brier"]) < 0.005
    assert abs(estimate["auprc"] - realised["auprc"]) < 0.02


def test_cbpe_sees_miscalibrated_scores_through_the_reference_calibration():
    rng = np.random.default_rng(15)
    true_p = rng.beta(1.5, 5, 20_000)
    labels = rng.binomial(1, true_p).astype(float)
    scores = np.sqrt(true_p)  # over-confident model: calibration error the estimate must see
    calibrator = performance.calibrator_fit(scores[:5000], labels[:5000])
    estimate = performance.cbpe(scores[5000:], calibrator)
    realised = performance.performance(scores[5000:], labels[5000:], bootstrap=20)
    assert estimate["ece"] == pytest.approx(realised["ece"], abs=0.02)
    assert estimate["ece"] > 0.1
