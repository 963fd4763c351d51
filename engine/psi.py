"""The population stability index: bins, the index, and whether a value is more than sampling noise.
Plain numpy, no Django; engine.drift grades features with it (its docstring gives the thresholds).

PSI on a small window is noise: with 60 rows against 1,000, PSI >= 0.25 turns up on some feature
of most windows of unchanged patients (PSI * nm / (n + m) is roughly chi-squared with bins - 1
degrees of freedom, Yurdakul 2018, and a bin left empty by chance adds about 0.1 * ln(0.1 / 1e-4)
= 0.7 on its own). So PSI, like KS and Cramer's V, raises severity only when sampling alone would
give a PSI that large with probability below the threshold (`psi_p_value`, a seeded parametric
bootstrap of both cohorts from the reference's bin shares), and only on enough rows to judge: every
bin the reference fills must expect at least MIN_EXPECTED_PER_BIN rows on both sides (Cochran's
rule for chi-squared tables), i.e. `psi_min_rows` rows, about 50 for ten even deciles and more
where a bin is thin. Below that the row says PSI is "too few rows to judge" (`psi_judged` false,
`notes`), whatever its value.
"""

from __future__ import annotations

import math

import numpy as np

PSI_BINS = 10
PSI_EPSILON = 1e-4
# Cochran's rule: a chi-squared approximation (PSI's null distribution) wants >= 5 expected per bin.
MIN_EXPECTED_PER_BIN = 5
# PSI's null distribution by parametric bootstrap (psi_p_value): enough draws for p < 0.01 / 25.
PSI_NULL_DRAWS = 20_000
PSI_NULL_SEED = 0
PSI_NULL_BATCH = 1_000


def _as_float(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)


def quantile_edges(reference, bins: int = PSI_BINS) -> np.ndarray:
    """Inner cut points at the reference's quantiles (duplicates dropped, so ties share a bin)."""
    ref = _as_float(reference)
    ref = ref[~np.isnan(ref)]
    if ref.size == 0:
        return np.array([], dtype=np.float64)
    cuts = np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1])
    return np.unique(cuts)


def bin_counts(values, edges: np.ndarray) -> np.ndarray:
    """Counts in the bins (-inf, e0], (e0, e1], ..., (e_last, inf), then the missing bin last."""
    values = _as_float(values)
    missing = np.isnan(values)
    index = np.searchsorted(edges, values[~missing], side="left")
    counts = np.bincount(index, minlength=len(edges) + 1).astype(np.float64)
    return np.append(counts, float(missing.sum()))


def level_counts(values, levels: int) -> np.ndarray:
    """Counts of the discrete levels 0..levels-1, then the missing bin last."""
    values = _as_float(values)
    missing = np.isnan(values)
    present = values[~missing].astype(np.int64)
    present = present[(present >= 0) & (present < levels)]
    counts = np.bincount(present, minlength=levels).astype(np.float64)
    return np.append(counts, float(missing.sum()))


def psi_from_counts(reference_counts, current_counts, epsilon: float = PSI_EPSILON) -> float:
    """sum((c - r) * ln(c / r)) over bins, proportions floored at `epsilon` so an empty bin is finite."""
    ref = _as_float(reference_counts)
    cur = _as_float(current_counts)
    if ref.sum() == 0 or cur.sum() == 0:
        return float("nan")
    r = np.maximum(ref / ref.sum(), epsilon)
    c = np.maximum(cur / cur.sum(), epsilon)
    return float(np.sum((c - r) * np.log(c / r)))


def psi(reference, current, *, bins: int = PSI_BINS, discrete_levels: int | None = None) -> float:
    """Population stability index of `current` against `reference`; missing values are a bin of their own.

    Numeric: `bins` quantile bins of the reference. Discrete (binary/categorical): one bin per level.
    """
    if discrete_levels is not None:
        return psi_from_counts(
            level_counts(reference, discrete_levels), level_counts(current, discrete_levels)
        )
    edges = quantile_edges(reference, bins)
    return psi_from_counts(bin_counts(reference, edges), bin_counts(current, edges))


def psi_min_rows(reference_counts) -> int:
    """The fewest rows a cohort needs for a PSI against these reference bin counts to be judged:
    every bin the reference fills then expects at least MIN_EXPECTED_PER_BIN rows. The reference
    must hold as many (its own thinnest bin counts too)."""
    ref = _as_float(reference_counts)
    shares = ref[ref > 0] / ref.sum() if ref.sum() else np.array([])
    if shares.size == 0:
        return 0
    return int(math.ceil(MIN_EXPECTED_PER_BIN / shares.min() - 1e-9))


def psi_p_value(
    reference_counts, current_counts, *, threshold: float = 0.0, draws: int = PSI_NULL_DRAWS
) -> float:
    """The chance that sampling alone gives a PSI at least this large when nothing shifted: both
    cohorts drawn again from the reference's bin shares (a parametric bootstrap, seeded, so the same
    counts always give the same answer), PSI computed as psi_from_counts does, epsilon floor and
    empty bins included: (1 + draws at or above) / (1 + draws).

    Drawn in batches; once the answer is sure to be at or above `threshold` drawing stops and that
    lower bound is returned (the comparison with `threshold` is the same as after every draw)."""
    ref, cur = _as_float(reference_counts), _as_float(current_counts)
    n_reference, n_current = int(ref.sum()), int(cur.sum())
    if n_reference == 0 or n_current == 0:
        return 1.0
    observed = psi_from_counts(ref, cur) - 1e-12
    shares = ref / n_reference
    rng = np.random.default_rng(PSI_NULL_SEED)
    above = done = 0
    while done < draws:
        size = min(PSI_NULL_BATCH, draws - done)
        r = np.maximum(rng.multinomial(n_reference, shares, size=size) / n_reference, PSI_EPSILON)
        c = np.maximum(rng.multinomial(n_current, shares, size=size) / n_current, PSI_EPSILON)
        above += int(np.count_nonzero(np.sum((c - r) * np.log(c / r), axis=1) >= observed))
        done += size
        if (1 + above) / (1 + draws) >= threshold > 0:
            return (1 + above) / (1 + done)
    return (1 + above) / (1 + done)
