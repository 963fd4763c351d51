"""Calibration figures per subgroup (issue #18): ECE, calibration intercept and slope.

Plain functions of (y_true, risk) arrays, used as MetricFrame metrics by :mod:`engine.subgroups`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import brentq
from scipy.special import expit, logit

_EPS = 1e-6


def _two_classes(y: np.ndarray) -> bool:
    return 0 < y.sum() < len(y)


def expected_calibration_error(y_true: Any, risk: Any, n_bins: int = 10) -> float:
    """ECE: 10 equal-width bins on [0, 1]; sum over bins of (bin share) * |mean risk - event rate|."""
    y, p = np.asarray(y_true, dtype=float), np.asarray(risk, dtype=float)
    if len(y) == 0:
        return float("nan")
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    counts = np.bincount(bins, minlength=n_bins)
    gap = np.abs(np.bincount(bins, p, n_bins) - np.bincount(bins, y, n_bins))  # sums per bin
    return float(gap.sum() / counts.sum())


def calibration_intercept(y_true: Any, risk: Any) -> float:
    """Calibration-in-the-large: ``a`` in logit P(y=1) = a + logit(risk) (slope fixed at 1, i.e. an
    offset logistic regression), solved exactly by root-finding the score equation. 0 is ideal;
    positive means the model under-predicts. NaN when only one class is present."""
    y, x = np.asarray(y_true, dtype=float), logit(np.clip(np.asarray(risk, dtype=float), _EPS, 1 - _EPS))
    if not _two_classes(y):
        return float("nan")
    return float(brentq(lambda a: float(np.sum(y - expit(a + x))), -30.0, 30.0))


def calibration_slope(y_true: Any, risk: Any, max_iter: int = 50) -> float:
    """Calibration slope: ``b`` in the unpenalised logistic regression logit P(y=1) = a + b*logit(risk),
    fitted by damped Newton-Raphson (the maximum-likelihood fit statsmodels Logit would give).
    1 is ideal; < 1 means risks too extreme.
    NaN when only one class is present or the fit does not converge."""
    y, x = np.asarray(y_true, dtype=float), logit(np.clip(np.asarray(risk, dtype=float), _EPS, 1 - _EPS))
    if not _two_classes(y):
        return float("nan")
    design = np.column_stack([np.ones_like(x), x])

    def loglik(b: np.ndarray) -> float:
        eta = design @ b
        return float(np.sum(y * eta - np.logaddexp(0.0, eta)))

    beta = np.array([float(logit(y.mean())), 0.0])
    ll = loglik(beta)
    for _ in range(max_iter):
        mu = expit(design @ beta)
        hess = design.T @ (design * (mu * (1 - mu))[:, None])
        try:
            step = np.linalg.solve(hess, design.T @ (y - mu))
        except np.linalg.LinAlgError:
            return float("nan")
        for _halving in range(30):  # damped Newton: halve until the (concave) log-likelihood rises
            new_ll = loglik(beta + step)
            if new_ll >= ll - 1e-12:
                break
            step = step / 2
        beta, ll = beta + step, new_ll
        if np.max(np.abs(step)) < 1e-8:
            return float(beta[1]) if abs(beta[1]) < 1e3 else float("nan")
    return float("nan")
