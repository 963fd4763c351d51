"""Proving one engine against another, and the per-row additivity guard with its fallback."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.fastshap.engines import Engine, EngineResult
from engine.fastshap.parsing import as_rows


def verify(fast: Engine, reference: Engine, rows: np.ndarray, tolerance: float = 1e-6) -> dict:
    """Compare two engines on `rows`: max |value difference|, |base difference|, passed."""
    rows = as_rows(rows)
    a = fast.explain(rows)
    b = reference.explain(rows)
    value_diff = float(np.max(np.abs(a.values - b.values))) if a.values.size else 0.0
    base_diff = abs(a.base_value - b.base_value)
    passed = bool(
        a.values.shape == b.values.shape
        and a.background_size == b.background_size
        and value_diff <= tolerance
        and base_diff <= tolerance
    )
    return {
        "rows": int(rows.shape[0]),
        "max_abs_value_diff": value_diff,
        "base_diff": float(base_diff),
        "background_size": (a.background_size, b.background_size),
        "tolerance": tolerance,
        "passed": passed,
    }


@dataclass(frozen=True)
class CheckedResult:
    result: EngineResult
    fallback_rows: np.ndarray  # indices recomputed with the reference engine
    max_additivity_error: float  # after the fallback

    @property
    def n_fallback(self) -> int:
        return int(self.fallback_rows.size)


def additivity_errors(result: EngineResult, margins: np.ndarray) -> np.ndarray:
    return np.abs(
        result.base_value + result.values.sum(axis=1) - np.asarray(margins, dtype=np.float64).ravel()
    )


def explain_checked(
    engine: Engine, reference: Engine, rows: np.ndarray, margins: np.ndarray, tolerance: float = 1e-4
) -> CheckedResult:
    """Explain with `engine`; rows whose |base + sum - margin| exceeds `tolerance` (or is not finite)
    are recomputed with `reference`. The result keeps `engine`'s base value (the two agree to ~1e-7
    when `verify` passed); ``max_additivity_error`` is measured after the fallback."""
    rows = as_rows(rows)
    margins = np.asarray(margins, dtype=np.float64).ravel()
    result = engine.explain(rows)
    errors = additivity_errors(result, margins)
    failing = np.flatnonzero(~(errors <= tolerance))
    values = result.values
    if failing.size:
        values = values.copy()
        redo = reference.explain(rows[failing])
        values[failing] = redo.values
        result = EngineResult(result.base_value, values, result.background_size)
        errors = additivity_errors(result, margins)
    worst = float(errors.max()) if errors.size else 0.0
    return CheckedResult(result=result, fallback_rows=failing, max_additivity_error=worst)
