"""Nearest reference patients. No Django.

- Similar patients: the nearest reference patients in SHAP space ("explained alike"). The index is
  scikit-learn's NearestNeighbors over the reference SHAP matrix (log-odds, one row per reference
  patient), built once per version and process from the stored matrix; a batch is one query.
- The out-of-distribution distance (engine.uncertainty): the mean distance to the k nearest
  reference patients in robust-scaled feature space, over the features both have measured (a numba
  kernel over a chunk of rows at a time).
"""

from __future__ import annotations

import numba
import numpy as np
from sklearn.neighbors import NearestNeighbors

# Rows whose neighbours' shared features are worked out at once (bounds the (rows, k, features) arrays).
_SHARED_CHUNK = 1024
# Distances held at once by the out-of-distribution k-NN (8 MB).
_CHUNK_CELLS = 1 << 20


def neighbour_index(reference_shap: np.ndarray) -> NearestNeighbors:
    return NearestNeighbors(metric="euclidean", algorithm="kd_tree").fit(
        np.asarray(reference_shap, dtype=np.float64)
    )


def nearest_many(index: NearestNeighbors, shap_rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(reference row indices, distances), each (rows, k): per row the k nearest, closest first, ties
    by index. One query for the whole batch."""
    k = min(k, index.n_samples_fit_)
    distances, indices = index.kneighbors(np.atleast_2d(shap_rows), n_neighbors=k)
    order = np.lexsort((indices, np.round(distances, 12)), axis=-1)
    return np.take_along_axis(indices, order, -1), np.take_along_axis(distances, order, -1)


def _shared_order(
    shap_rows: np.ndarray, neighbour_rows: np.ndarray, top: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per (row, neighbour): the `top` features by shared push, strongest first (ties by feature), and
    whether each is shared at all. shap_rows (rows, features), neighbour_rows (rows, k, features).

    Strength is the smaller of the two |SHAP| values where both push the same way: a feature counts
    as shared only as far as both patients' explanations rely on it.
    """
    a = shap_rows[:, None, :]
    agree = (np.sign(a) == np.sign(neighbour_rows)) & (a != 0)
    strength = np.where(agree, np.minimum(np.abs(a), np.abs(neighbour_rows)), 0.0)
    order = np.argsort(-strength, axis=-1, kind="stable")[..., :top]
    return order, np.take_along_axis(strength, order, -1) > 0


def similar_patients_many(
    *,
    index: NearestNeighbors,
    reference_shap: np.ndarray,
    shap_rows: np.ndarray,
    labels: np.ndarray,
    expected_risk: np.ndarray,
    units: list[str],
    names: list[str],
    k: int = 10,
) -> list[dict]:
    """Per row, the k nearest reference patients with outcome, risk, unit and the features they share."""
    shap_rows = np.atleast_2d(np.asarray(shap_rows, dtype=np.float64))
    indices, distances = nearest_many(index, shap_rows, k)
    results = []
    for start in range(0, len(shap_rows), _SHARED_CHUNK):
        rows, near = shap_rows[start : start + _SHARED_CHUNK], indices[start : start + _SHARED_CHUNK]
        order, shared = _shared_order(rows, reference_shap[near], 3)
        raises = (rows > 0).tolist()
        for r, (row_near, row_distances, row_order, row_shared) in enumerate(
            zip(
                near.tolist(),
                distances[start : start + _SHARED_CHUNK].tolist(),
                order.tolist(),
                shared.tolist(),
                strict=True,
            )
        ):
            neighbours = [
                {
                    "reference_row": i,
                    "distance": d,
                    "outcome": bool(labels[i]),
                    "risk": float(expected_risk[i]),
                    "unit": units[i],
                    "shared_features": [
                        {"name": names[f], "direction": "raises risk" if raises[r][f] else "lowers risk"}
                        for f, keep in zip(features, keeps, strict=True)
                        if keep
                    ],
                }
                for i, d, features, keeps in zip(row_near, row_distances, row_order, row_shared, strict=True)
            ]
            events = sum(n["outcome"] for n in neighbours)
            results.append({"k": len(neighbours), "events": int(events), "neighbours": neighbours})
    return results


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
    return similar_patients_many(
        index=index,
        reference_shap=reference_shap,
        shap_rows=np.atleast_2d(shap_row),
        labels=labels,
        expected_risk=expected_risk,
        units=units,
        names=names,
        k=k,
    )[0]


# --- the out-of-distribution distance ------------------------------------------------------------


@numba.njit(cache=True)
def _distances(scaled, reference_t):
    """(rows, reference rows) distances over the features both have measured, scaled up to all
    features (a row with fewer shared values is not artificially close); inf when none is shared.

    reference_t is feature-major (features, reference rows): squares are summed feature by feature,
    as numpy sums the column-major reference matrices pandas hands over, so every figure is the one
    the plain numpy formula gives, to the bit; the inner loop runs along reference rows (SIMD).
    """
    d, m = reference_t.shape
    out = np.empty((scaled.shape[0], m))
    count = np.empty(m)
    for i in range(scaled.shape[0]):
        total = out[i]
        total[:] = 0.0
        count[:] = 0.0
        for f in range(d):
            x = scaled[i, f]
            for j in range(m):
                diff = reference_t[f, j] - x
                shared = np.isfinite(diff)
                total[j] += diff * diff if shared else 0.0
                count[j] += 1.0 if shared else 0.0
        for j in range(m):
            total[j] = np.sqrt(total[j] * d / count[j]) if count[j] > 0 else np.inf
    return out


def knn_distances(
    scaled: np.ndarray, reference: np.ndarray, k: int, *, leave_one_out: bool = False
) -> np.ndarray:
    """Mean distance of each scaled row to its k nearest reference rows, in chunks of rows so the
    distance matrix stays small. leave_one_out: the rows are the reference itself, each without itself."""
    scaled = np.ascontiguousarray(np.atleast_2d(scaled), dtype=np.float64)
    reference_t = np.ascontiguousarray(np.asarray(reference, dtype=np.float64).T)  # no copy if column-major
    k = min(k, reference_t.shape[1] - leave_one_out)
    out = np.empty(len(scaled))
    step = max(1, _CHUNK_CELLS // max(1, reference_t.shape[1]))
    for start in range(0, len(scaled), step):
        distance = _distances(scaled[start : start + step], reference_t)
        if leave_one_out:
            rows = np.arange(len(distance))
            distance[rows, start + rows] = np.inf
        # The k smallest in np.partition's order, summed along contiguous rows: the very sum (and
        # so the very float) of `np.partition(distance, k - 1)[:k].mean()` row by row.
        closest = np.ascontiguousarray(np.partition(distance, k - 1, axis=1)[:, :k])
        out[start : start + step] = closest.sum(axis=1) / k
    return out
