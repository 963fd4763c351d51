"""The numerical core of per-patient explanations: one SHAP engine interface, no Django.

Every engine answers ``explain(rows) -> Attribution(base_value, values, background_size)``:
interventional TreeSHAP against the *whole* documented background set, in log-odds.

- The reference is shap's TreeExplainer. shap wraps any background in an Independent masker that
  keeps only 100 rows unless told otherwise, so the masker is built with max_samples equal to the
  background size, and the size actually used is returned with every explanation. shap is imported
  by the first reference engine built.
- The fast engine (engine.fastshap) computes the same values exactly, with the background pass done
  once per version. Registration proves it on the bundle (``engine_prove``); a version whose proof
  fails, or whose model it cannot read, is explained by the reference. In service it is wrapped in
  ``GuardedEngine``: every row is checked for additivity and a row that fails is redone by shap.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from engine import fastshap
from engine.probability import probability_points, sigmoid  # noqa: F401 (the SHAP API's own terms)

# XGBoost accumulates leaf values in float32; base + sum(shap) matches the margin to ~1e-6
# in practice, and the contract allows 1e-4 in log-odds.
ADDITIVITY_TOLERANCE = 1e-4


#: The engines a version can be explained by; the registration check decides which (the card says).
ENGINE_FAST = "fast-exact"
ENGINE_REFERENCE = "shap-reference"
ENGINE_NAMES = {
    ENGINE_FAST: "Sightline's exact interventional TreeSHAP (fast engine, proven equal to shap here)",
    ENGINE_REFERENCE: "shap.TreeExplainer, interventional (the reference engine)",
}
#: How close the fast engine must come to shap at registration, values and base, in log-odds.
ENGINE_PROOF_TOLERANCE = 1e-6
# Registry model formats the fast engine reads, by its own format names.
_FAST_FORMATS = {"xgboost": "xgboost", "lightgbm": "lightgbm", "sklearn-skops": "sklearn"}

#: One explanation of rows: base value, SHAP values (n_rows, n_features) in log-odds, background size.
Attribution = fastshap.EngineResult


class AdditivityError(ValueError):
    pass


def tree_explainer(model, background: np.ndarray) -> fastshap.ReferenceEngine:
    """The reference engine: an interventional shap.TreeExplainer that uses every row of `background`."""
    return fastshap.ReferenceEngine(model, np.asarray(background, dtype=np.float64))


def background_size(engine) -> int:
    return int(engine.background_size)


def explain(engine, rows: np.ndarray) -> Attribution:
    """Explain `rows` with any engine (``engine.explain(rows) -> Attribution``)."""
    return engine.explain(np.atleast_2d(np.asarray(rows, dtype=np.float64)))


class _LazyEngine:
    """An engine built on its first call (shap is heavy and usually never needed here)."""

    def __init__(self, factory: Callable[[], Any]):
        self._factory = factory
        self._engine = None

    def explain(self, rows: np.ndarray) -> Attribution:
        if self._engine is None:
            self._engine = self._factory()
        return self._engine.explain(rows)


class GuardedEngine:
    """The fast engine with every row checked for additivity against the model's own log-odds; a row
    that does not add up is explained again by the reference engine (built on first need), so a
    routing edge case can never reach a clinician. ``fallback_rows`` counts those rows."""

    name = ENGINE_FAST

    def __init__(self, fast: fastshap.FastEngine, reference: Callable[[], Any], margin: Callable):
        self.fast = fast
        self._reference = _LazyEngine(reference)
        self._margin = margin
        self.background_size = fast.background_size
        self.base_value = fast.base_value
        self.fallback_rows = 0

    def explain(self, rows: np.ndarray) -> Attribution:
        rows = np.atleast_2d(np.asarray(rows, dtype=np.float64))
        checked = fastshap.explain_checked(
            self.fast, self._reference, rows, self._margin(rows), tolerance=ADDITIVITY_TOLERANCE
        )
        self.fallback_rows += checked.n_fallback
        return checked.result


def fast_engine(model_format: str, model, background: np.ndarray) -> fastshap.FastEngine:
    """The fast engine for a registry model format; raises fastshap.UnsupportedModel when it cannot
    read the model exactly."""
    fast_format = _FAST_FORMATS.get(model_format)
    if fast_format is None:
        raise fastshap.UnsupportedModel(f"the fast engine does not read the {model_format} format")
    return fastshap.FastEngine(model, fast_format, np.asarray(background, dtype=np.float64))


def version_engine(engine_name: str, model_format: str, model, background: np.ndarray, margin: Callable):
    """The engine a version was registered with: the guarded fast engine when its proof passed,
    else the reference."""
    if engine_name == ENGINE_FAST:
        fast = fast_engine(model_format, model, background)
        return GuardedEngine(fast, lambda: tree_explainer(model, background), margin)
    return tree_explainer(model, background)


def engine_prove(
    model_format: str, model, background: np.ndarray, sample: np.ndarray, reference: Attribution
) -> dict:
    """Registration's proof: the fast engine on `sample` against the reference engine's attribution of
    the same rows, values and base value to ENGINE_PROOF_TOLERANCE. The figures name the engine the
    version will be explained by and, when it is the reference, why."""
    figures: dict[str, Any] = {"tolerance": ENGINE_PROOF_TOLERANCE, "rows": int(len(sample))}
    try:
        started = time.perf_counter()
        fast = fast_engine(model_format, model, background)
        figures["precompute_seconds"] = round(time.perf_counter() - started, 3)
        started = time.perf_counter()
        result = fast.explain(sample)
        figures["ms_per_row"] = round(1000 * (time.perf_counter() - started) / max(len(sample), 1), 4)
    except (fastshap.UnsupportedModel, ValueError) as exc:
        return {**figures, "engine": ENGINE_REFERENCE, "passed": True, "reason": str(exc)}
    value_diff = float(np.max(np.abs(result.values - reference.values))) if result.values.size else 0.0
    base_diff = abs(result.base_value - reference.base_value)
    figures.update(max_abs_value_diff=value_diff, base_diff=float(base_diff))
    if value_diff <= ENGINE_PROOF_TOLERANCE and base_diff <= ENGINE_PROOF_TOLERANCE:
        return {**figures, "engine": ENGINE_FAST, "passed": True, "reason": ""}
    reason = (
        f"the fast engine differs from shap by {value_diff:.1e} (values) and {base_diff:.1e} (base) "
        f"log-odds, above {ENGINE_PROOF_TOLERANCE:.0e}"
    )
    return {**figures, "engine": ENGINE_REFERENCE, "passed": True, "reason": reason}


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
