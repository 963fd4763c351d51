"""Mean |SHAP| by feature per subgroup with bootstrap 95% intervals (issue #18).

The intervals use the very resamples fairlearn's ``MetricFrame`` draws for the other subgroup metrics
(:func:`bootstrap_rows`), so every interval on the card comes from the same bootstrap. Running the
SHAP columns through ``MetricFrame`` itself would call one Python function per feature, group and
resample (minutes for a 30-feature model); here each resample is one matrix product. A test checks
the figures against ``MetricFrame(..., sample_params, n_boot, random_state)`` on a small set.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np


def bootstrap_rows(n: int, n_boot: int, random_state: int) -> Iterator[np.ndarray]:
    """The row indices of each of fairlearn's ``n_boot`` resamples of ``n`` rows: its seeds
    (``generate_bootstrap_samples``) fed to ``DataFrame.sample(frac=1, replace=True)``."""
    seeds = np.random.default_rng(seed=int(random_state)).integers(
        low=0, high=np.iinfo(np.uint32).max, size=n_boot, dtype=np.uint32
    )
    for seed in seeds:
        yield np.random.RandomState(seed).choice(n, size=n, replace=True)


def mean_abs_shap_intervals(
    abs_shap: np.ndarray,
    groups: np.ndarray,
    order: Sequence[str],
    feature_names: Sequence[str],
    *,
    n_boot: int,
    random_state: int,
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(overall, group -> ...) where each is ``{feature: {"ci_low", "ci_high"}}``: the 2.5% and 97.5%
    quantiles of mean |SHAP| over the bootstrap resamples (a group absent from a resample is skipped,
    as MetricFrame does). Empty dicts when ``n_boot`` is 0."""
    if not n_boot or len(abs_shap) == 0:
        return {}, {k: {} for k in order}
    n, k = abs_shap.shape
    membership = np.column_stack([np.ones(n), *(groups == g for g in order)]).astype(float)
    means = np.full((n_boot, membership.shape[1], k), np.nan)
    for b, rows in enumerate(bootstrap_rows(n, n_boot, random_state)):
        weight = np.bincount(rows, minlength=n).astype(float)  # how often each row was drawn
        counts = membership.T @ weight
        sums = (membership * weight[:, None]).T @ abs_shap
        with np.errstate(invalid="ignore", divide="ignore"):
            means[b] = sums / counts[:, None]
    with warnings.catch_warnings():  # a group never drawn: no interval, not a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = np.nanquantile(means, [0.025, 0.975], axis=0)

    def figures(j: int) -> dict[str, Any]:
        return {
            f: {"ci_low": _finite(low[j, i]), "ci_high": _finite(high[j, i])}
            for i, f in enumerate(feature_names)
        }

    return figures(0), {g: figures(j + 1) for j, g in enumerate(order)}


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None
