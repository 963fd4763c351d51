"""Model performance once outcomes arrive, and a label-free estimate before. Plain numpy/sklearn, no Django.

Realised: AUROC, AUPRC (average precision), Brier score, expected calibration error (ECE, equal-width
bins) and the calibration curve, each with a percentile bootstrap 95% CI. The bootstrap is
vectorised (all resamples at once) and seeded, so the same rows always give the same interval.

Estimated (CBPE, confidence-based performance estimation, as NannyML does): with scores calibrated
on the labelled reference set (isotonic regression), each patient's calibrated probability p_i is
the expected value of their unknown label. Sorting by score, the expected true and false positives
above each threshold are the running sums of p_i and 1 - p_i, which give an expected ROC curve and
its area, an expected precision-recall curve, an expected Brier score (s_i - p_i)^2 + p_i(1 - p_i),
and an expected ECE (|mean s - mean p| per bin). It is an estimate: it holds while the calibration
fitted on the reference still holds (no concept drift), which only outcomes can confirm.
"""

from __future__ import annotations

import numpy as np
from scipy import stats
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

ECE_BINS = 10
BOOTSTRAP = 200
SEED = 20_260_101
MIN_PER_CLASS = 5


def _arrays(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=np.float64)


# --- vectorised metrics over rows (one row = one bootstrap resample) -----------------------------


def auroc_rows(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """AUROC of each row via the Mann-Whitney U statistic (average ranks for ties)."""
    scores, labels = np.atleast_2d(scores), np.atleast_2d(labels)
    ranks = stats.rankdata(scores, axis=1)
    n_pos = labels.sum(axis=1)
    n_neg = labels.shape[1] - n_pos
    u = (ranks * labels).sum(axis=1) - n_pos * (n_pos + 1) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return u / (n_pos * n_neg)


def average_precision_rows(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Average precision of each row, ties handled as sklearn does (one threshold per distinct score)."""
    scores, labels = np.atleast_2d(scores), np.atleast_2d(labels)
    order = np.argsort(-scores, axis=1, kind="stable")
    s = np.take_along_axis(scores, order, axis=1)
    y = np.take_along_axis(labels, order, axis=1)
    n = s.shape[1]
    tp = np.cumsum(y, axis=1)
    # Precision is read at the last position of each run of tied scores.
    last = np.ones_like(s, dtype=bool)
    last[:, :-1] = s[:, 1:] != s[:, :-1]
    positions = np.where(last, np.arange(n), n - 1)
    group_end = np.minimum.accumulate(positions[:, ::-1], axis=1)[:, ::-1]
    precision_at_end = np.take_along_axis(tp, group_end, axis=1) / (group_end + 1)
    n_pos = y.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (y * precision_at_end).sum(axis=1) / n_pos


def brier_rows(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return np.mean((np.atleast_2d(scores) - np.atleast_2d(labels)) ** 2, axis=1)


def _bin_index(scores: np.ndarray, bins: int) -> np.ndarray:
    # Equal-width bins on [0, 1]; a score of exactly 1 falls in the last bin.
    return np.minimum((scores * bins).astype(np.int64), bins - 1)


def ece_rows(scores: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> np.ndarray:
    """Expected calibration error of each row: sum over bins of (n_b / n) |mean label - mean score|."""
    scores, labels = np.atleast_2d(scores), np.atleast_2d(labels)
    rows, n = scores.shape
    index = _bin_index(scores, bins) + bins * np.arange(rows)[:, None]
    size = rows * bins
    sum_s = np.bincount(index.ravel(), weights=scores.ravel(), minlength=size).reshape(rows, bins)
    sum_y = np.bincount(index.ravel(), weights=labels.ravel(), minlength=size).reshape(rows, bins)
    return np.abs(sum_y - sum_s).sum(axis=1) / n


def calibration_curve(scores, labels, bins: int = ECE_BINS) -> list[dict]:
    """Per equal-width bin with rows: mean predicted risk, observed event rate, count."""
    scores, labels = _arrays(scores, labels)
    index = _bin_index(scores, bins)
    out = []
    for b in range(bins):
        mask = index == b
        if mask.any():
            out.append(
                {
                    "bin": [b / bins, (b + 1) / bins],
                    "predicted": float(scores[mask].mean()),
                    "observed": float(labels[mask].mean()),
                    "n": int(mask.sum()),
                }
            )
    return out


# --- realised performance ------------------------------------------------------------------------


def _interval(values: np.ndarray) -> list[float] | None:
    values = values[np.isfinite(values)]
    if values.size < 10:
        return None
    low, high = np.percentile(values, [2.5, 97.5])
    return [float(low), float(high)]


def performance(
    scores, labels, *, bootstrap: int = BOOTSTRAP, seed: int = SEED, bins: int = ECE_BINS
) -> dict:
    """Realised performance with percentile bootstrap 95% CIs (None when a class has < 5 rows)."""
    scores, labels = _arrays(scores, labels)
    n, n_pos = int(scores.size), int(labels.sum())
    out: dict = {"n": n, "events": n_pos, "estimate": False}
    if n_pos < MIN_PER_CLASS or n - n_pos < MIN_PER_CLASS:
        out.update(auroc=None, auprc=None, brier=None, ece=None, calibration=[], ci={})
        out["note"] = f"Needs at least {MIN_PER_CLASS} patients with and without the outcome."
        return out
    out["auroc"] = float(roc_auc_score(labels, scores))
    out["auprc"] = float(average_precision_score(labels, scores))
    out["brier"] = float(brier_score_loss(labels, scores))
    out["ece"] = float(ece_rows(scores, labels, bins)[0])
    out["calibration"] = calibration_curve(scores, labels, bins)
    rng = np.random.default_rng(seed)
    index = rng.integers(0, n, size=(bootstrap, n))
    s, y = scores[index], labels[index]
    out["ci"] = {
        "auroc": _interval(auroc_rows(s, y)),
        "auprc": _interval(average_precision_rows(s, y)),
        "brier": _interval(brier_rows(s, y)),
        "ece": _interval(ece_rows(s, y, bins)),
    }
    out["bootstrap"] = bootstrap
    return out


# --- CBPE ----------------------------------------------------------------------------------------


def calibrator_fit(scores, labels) -> dict:
    """Isotonic calibration of scores to observed event rates, as JSON-able knots for np.interp."""
    scores, labels = _arrays(scores, labels)
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(scores, labels)
    return {"x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()}


def calibrate(calibrator: dict, scores) -> np.ndarray:
    return np.interp(np.asarray(scores, dtype=np.float64), calibrator["x"], calibrator["y"])


def cbpe(scores, calibrator: dict | None = None, *, bins: int = ECE_BINS) -> dict:
    """Expected performance without labels (see the module docstring). `estimate` is always True.

    Without a calibrator the scores are taken as calibrated already.
    """
    scores = np.asarray(scores, dtype=np.float64)
    p = scores if calibrator is None else calibrate(calibrator, scores)
    n = int(scores.size)
    out: dict = {"n": n, "expected_events": float(p.sum()), "estimate": True, "method": "CBPE"}
    if n < 2 * MIN_PER_CLASS or p.sum() < 1 or (1 - p).sum() < 1:
        out.update(auroc=None, auprc=None, brier=None, ece=None)
        return out
    order = np.argsort(-scores, kind="stable")
    s_sorted, p_sorted = scores[order], p[order]
    # One threshold per distinct score, as for realised curves.
    last = np.append(s_sorted[1:] != s_sorted[:-1], True)
    tp = np.cumsum(p_sorted)[last]
    fp = np.cumsum(1 - p_sorted)[last]
    k = (np.flatnonzero(last) + 1).astype(np.float64)
    tpr = np.concatenate([[0.0], tp / p.sum()])
    fpr = np.concatenate([[0.0], fp / (1 - p).sum()])
    out["auroc"] = float(np.trapezoid(tpr, fpr))
    recall_step = np.diff(tpr)
    out["auprc"] = float(np.sum(recall_step * (tp / k)))
    out["brier"] = float(np.mean((scores - p) ** 2 + p * (1 - p)))
    index = _bin_index(scores, bins)
    expected = np.bincount(index, weights=p, minlength=bins)
    predicted = np.bincount(index, weights=scores, minlength=bins)
    out["ece"] = float(np.abs(expected - predicted).sum() / n)
    return out
