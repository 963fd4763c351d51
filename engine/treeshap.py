"""The numerical core of per-patient explanations: plain numpy/shap, no Django.

SHAP values are interventional TreeSHAP against the *whole* documented background set.
shap wraps any background (DataFrame or array) in an Independent masker that keeps only
100 rows unless told otherwise, so the masker is built here with max_samples equal to the
background size, and the size actually used is returned with every explanation.

shap (and numba under it) takes about 1.4 s and 100 MB to import, so it is imported by the first
explainer built, here and nowhere else: a web process that only shows stored explanations never
loads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from engine.probability import probability_points, sigmoid  # noqa: F401 (the SHAP API's own terms)

if TYPE_CHECKING:
    import shap

# XGBoost accumulates leaf values in float32; base + sum(shap) matches the margin to ~1e-6
# in practice, and the contract allows 1e-4 in log-odds.
ADDITIVITY_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Attribution:
    base_value: float
    values: np.ndarray  # (n_rows, n_features), log-odds
    background_size: int


class AdditivityError(ValueError):
    pass


def tree_explainer(model, background: np.ndarray) -> shap.TreeExplainer:
    """An interventional TreeExplainer that uses every row of `background`."""
    import shap  # noqa: PLC0415 (heavy: loaded by the first explainer, see the module docstring)

    background = np.asarray(background, dtype=np.float64)
    masker = shap.maskers.Independent(background, max_samples=background.shape[0])
    return shap.TreeExplainer(model, data=masker, feature_perturbation="interventional", model_output="raw")


def background_size(explainer: shap.TreeExplainer) -> int:
    return int(explainer.data.shape[0])


def explain(explainer: shap.TreeExplainer, rows: np.ndarray) -> Attribution:
    rows = np.atleast_2d(np.asarray(rows, dtype=np.float64))
    values = np.asarray(explainer.shap_values(rows, check_additivity=False), dtype=np.float64)
    base = float(np.ravel(explainer.expected_value)[0])
    return Attribution(base_value=base, values=values, background_size=background_size(explainer))


def additivity_error(attribution: Attribution, margins: np.ndarray) -> np.ndarray:
    """|base + sum(shap) - margin| per row, in log-odds."""
    return np.abs(
        attribution.base_value + attribution.values.sum(axis=1) - np.asarray(margins, dtype=np.float64)
    )


def check_additivity(
    attribution: Attribution, margins: np.ndarray, tolerance: float = ADDITIVITY_TOLERANCE
) -> float:
    """Return the largest additivity error; raise AdditivityError when it exceeds `tolerance`."""
    errors = additivity_error(attribution, margins)
    worst = float(errors.max()) if errors.size else 0.0
    if not np.isfinite(worst) or worst > tolerance:
        raise AdditivityError(
            f"SHAP values do not add up to the model output: largest error {worst:.2e} log-odds "
            f"(tolerance {tolerance:.0e})."
        )
    return worst
