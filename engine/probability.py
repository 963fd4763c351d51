"""Log-odds and probability: the model's margin as a risk, and SHAP values as probability points.

Kept apart from engine.treeshap (which loads shap and numba) so that pages showing stored figures
import nothing heavy. The worker stores each contribution's points with the explanation; the page
shows the stored figures and never recomputes them.
"""

from __future__ import annotations

import numpy as np


def sigmoid(margin: np.ndarray | float) -> np.ndarray | float:
    return 1.0 / (1.0 + np.exp(-np.asarray(margin, dtype=np.float64)))


def probability_points(base_value: float, values: np.ndarray) -> np.ndarray:
    """Approximate each contribution in probability points, for display only.

    Features are added in order of decreasing |SHAP| and each one's share is the change in
    sigmoid(base + running sum) it causes. The shares add up exactly to risk - sigmoid(base),
    but unlike the log-odds values they depend on that order; the UI says so.
    """
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(-np.abs(values))
    points = np.zeros_like(values)
    running = base_value
    for index in order:
        before = sigmoid(running)
        running += values[index]
        points[index] = sigmoid(running) - before
    return points
