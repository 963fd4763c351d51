"""Optional recalibration of a model's risk on the reference set: isotonic or Platt. Plain numpy/sklearn.

The fitted mapping is stored as JSON (isotonic: the step function's thresholds; Platt: two
coefficients on the logit of the risk), never pickled, and `recalibration_apply` evaluates it
exactly as sklearn's fitted estimator would. The reference set is the only labelled data a bundle
brings, so figures for the recalibrated risk are *cross-fitted*: each patient's recalibrated risk
comes from a mapping fitted on the other folds, so the reported ECE/Brier are not the optimism of a
mapping judged on the patients it was fitted to. The stored mapping is fitted on the whole set.
"""

from __future__ import annotations

import numpy as np

METHODS = ("isotonic", "platt")
CROSS_FIT_FOLDS = 5
CROSS_FIT_SEED = 0
# Risks are clipped away from 0 and 1 before taking the logit (Platt).
_EPS = 1e-12


def _logit(risk: np.ndarray) -> np.ndarray:
    risk = np.clip(np.asarray(risk, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(risk / (1 - risk))


def recalibration_fit(method: str, labels: np.ndarray, risk: np.ndarray) -> dict:
    """Fit the mapping risk -> recalibrated risk; returns it as a JSON-able dict."""
    labels = np.asarray(labels, dtype=np.float64)
    risk = np.asarray(risk, dtype=np.float64)
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        fitted = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(risk, labels)
        return {
            "method": "isotonic",
            "x": [float(v) for v in fitted.X_thresholds_],
            "y": [float(v) for v in fitted.y_thresholds_],
        }
    if method == "platt":
        from sklearn.linear_model import LogisticRegression

        fitted = LogisticRegression(C=np.inf, tol=1e-10, max_iter=1_000).fit(
            _logit(risk).reshape(-1, 1), labels
        )
        return {
            "method": "platt",
            "slope": float(fitted.coef_[0, 0]),
            "intercept": float(fitted.intercept_[0]),
        }
    raise ValueError(f"Unknown recalibration method {method!r}: expected one of {', '.join(METHODS)}.")


def recalibration_apply(mapping: dict, risk: np.ndarray) -> np.ndarray:
    """The recalibrated risk under a stored mapping."""
    risk = np.asarray(risk, dtype=np.float64)
    if mapping["method"] == "isotonic":
        # IsotonicRegression.predict with out_of_bounds="clip": linear interpolation, flat outside.
        return np.interp(risk, np.asarray(mapping["x"]), np.asarray(mapping["y"]))
    if mapping["method"] == "platt":
        return 1.0 / (1.0 + np.exp(-(mapping["slope"] * _logit(risk) + mapping["intercept"])))
    raise ValueError(f"Unknown recalibration method {mapping['method']!r}.")


def cross_fit_folds(
    labels: np.ndarray, *, folds: int = CROSS_FIT_FOLDS, seed: int = CROSS_FIT_SEED
) -> np.ndarray:
    """Fold number of each patient: stratified by label, shuffled with a fixed seed."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    # Patients of each label in a shuffled order, labels one after the other, dealt round-robin:
    # every fold gets its share of each label and the fold sizes differ by at most one.
    order = np.concatenate([rng.permutation(np.flatnonzero(labels == value)) for value in np.unique(labels)])
    assignment = np.empty(len(labels), dtype=int)
    assignment[order] = np.arange(len(labels)) % folds
    return assignment


def cross_fitted_risk(
    method: str,
    labels: np.ndarray,
    risk: np.ndarray,
    *,
    folds: int = CROSS_FIT_FOLDS,
    seed: int = CROSS_FIT_SEED,
    assignment: np.ndarray | None = None,
) -> np.ndarray:
    """Each patient's recalibrated risk from a mapping fitted on the other folds (`assignment`: each
    patient's fold; by default `cross_fit_folds`)."""
    labels = np.asarray(labels, dtype=np.float64)
    risk = np.asarray(risk, dtype=np.float64)
    if assignment is None:
        assignment = cross_fit_folds(labels, folds=folds, seed=seed)
    out = np.empty(len(risk))
    for fold in np.unique(assignment):
        held_out = assignment == fold
        mapping = recalibration_fit(method, labels[~held_out], risk[~held_out])
        out[held_out] = recalibration_apply(mapping, risk[held_out])
    return out
