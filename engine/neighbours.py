"""Similar patients: the nearest reference patients in SHAP space ("explained alike"). No Django.

The index is scikit-learn's NearestNeighbors over the reference SHAP matrix (log-odds, one row per
reference patient), built once per version and process from the stored matrix.
"""

from __future__ import annotations

import numpy as np
from sklearn.neighbors import NearestNeighbors


def neighbour_index(reference_shap: np.ndarray) -> NearestNeighbors:
    return NearestNeighbors(metric="euclidean", algorithm="kd_tree").fit(
        np.asarray(reference_shap, dtype=np.float64)
    )


def nearest(index: NearestNeighbors, shap_row: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(reference row indices, distances) of the k nearest, closest first; ties by index."""
    k = min(k, index.n_samples_fit_)
    distances, indices = index.kneighbors(np.atleast_2d(shap_row), n_neighbors=k)
    order = np.lexsort((indices[0], np.round(distances[0], 12)))
    return indices[0][order], distances[0][order]


def shared_features(
    shap_row: np.ndarray, neighbour_row: np.ndarray, names: list[str], top: int = 3
) -> list[dict]:
    """The features pushing both patients the same way, strongest shared push first.

    Strength is the smaller of the two |SHAP| values: a feature counts as shared only as far as
    both patients' explanations rely on it.
    """
    a = np.asarray(shap_row, dtype=np.float64)
    b = np.asarray(neighbour_row, dtype=np.float64)
    agree = (np.sign(a) == np.sign(b)) & (a != 0)
    strength = np.where(agree, np.minimum(np.abs(a), np.abs(b)), 0.0)
    order = [i for i in np.argsort(-strength, kind="stable") if strength[i] > 0][:top]
    return [{"name": names[i], "direction": "raises risk" if a[i] > 0 else "lowers risk"} for i in order]


def similar_patients(
    *,
    index: NearestNeighbors,
    reference_shap: np.ndarray,
    shap_row: np.ndarray,
    labels: np.ndarray,
    expected_risk: np.ndarray,
    units: list[str],
    names: list[str],
    k: int = 10,
) -> dict:
    """The k nearest reference patients with outcome, risk, unit and the features they share."""
    indices, distances = nearest(index, shap_row, k)
    neighbours = [
        {
            "reference_row": int(i),
            "distance": float(d),
            "outcome": bool(labels[i]),
            "risk": float(expected_risk[i]),
            "unit": units[i],
            "shared_features": shared_features(shap_row, reference_shap[i], names),
        }
        for i, d in zip(indices, distances, strict=True)
    ]
    events = sum(n["outcome"] for n in neighbours)
    return {"k": len(neighbours), "events": int(events), "neighbours": neighbours}
