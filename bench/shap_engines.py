"""Benchmark of the interventional TreeSHAP engines (issue 16). Prints figures only; no assertions.

On the RHC cohort (SurvSet, offline; numeric columns with their NaNs plus categorical codes, label =
death) or a synthetic stand-in if SurvSet cannot load it, for XGBoost 200 trees depth 4 and 300 trees
depth 6, background 500 rows:

- shap.TreeExplainer(feature_perturbation="interventional") over the whole background (the reference),
- engine.fastshap.FastEngine (background pass once at construction; per-row part only),
- woodelf-explainer called directly (its background pass is redone on every call),
- XGBoost pred_contribs (path-dependent TreeSHAP, no background: a different quantity, for scale).

Single-row latency is the median of 20 calls (woodelf: of 5). Throughput at 1,000 / 10,000 / 100,000 rows
(the rows are resampled from the cohort); shap runs on at most 2,000 rows and its rate at larger sizes
is extrapolated per row, as is woodelf's beyond 10,000. Large batches are streamed in chunks of 10,000.

    .venv/bin/python bench/shap_engines.py [--sizes 1000,10000,100000] [--skip-woodelf]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.fastshap import (  # noqa: E402
    FastEngine,
    ReferenceEngine,
    WoodelfEngine,
    additivity_errors,
    model_margin,
    verify,
)

SHAP_MAX_ROWS = 2000
WOODELF_MAX_ROWS = 10000
CHUNK = 10000


def load_cohort():
    try:
        from SurvSet.data import SurvLoader

        df = SurvLoader().load_dataset("rhc")["df"]
        columns = [c for c in df.columns if c.startswith(("num_", "fac_"))]
        X = np.column_stack(
            [
                df[c].astype(float).to_numpy()
                if c.startswith("num_")
                else np.where(df[c].cat.codes.to_numpy() < 0, np.nan, df[c].cat.codes.to_numpy()).astype(
                    float
                )
                for c in columns
            ]
        )
        return "RHC (SurvSet)", X, df["event"].to_numpy().astype(int), columns
    except Exception as exc:  # offline fallback
        print(f"SurvSet RHC unavailable ({exc}); using synthetic data")
        rng = np.random.default_rng(0)
        X = rng.normal(size=(5735, 50))
        X[:, :10] = (X[:, :10] > 0).astype(float)
        y = (X[:, :5].sum(axis=1) + X[:, 10] * X[:, 11] + rng.normal(size=X.shape[0]) > 0).astype(int)
        X[rng.random(X.shape) < 0.15] = np.nan
        return "synthetic", X, y, [f"f{i}" for i in range(X.shape[1])]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def median_ms(fn, repeats: int) -> float:
    fn()  # warm
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000.0 * float(np.median(times))


def rate(fn, rows: np.ndarray, cap: int | None = None) -> tuple[float, bool]:
    """rows/s of fn over `rows` (in chunks); when cap < len(rows), measured on the first cap rows."""
    extrapolated = cap is not None and rows.shape[0] > cap
    subset = rows[:cap] if extrapolated else rows
    t0 = time.perf_counter()
    for lo in range(0, subset.shape[0], CHUNK):
        fn(subset[lo : lo + CHUNK])
    return subset.shape[0] / (time.perf_counter() - t0), extrapolated


def single_row_latency(one, reference, fast, woodelf, contribs) -> None:
    print("single row latency (ms, median):")
    print(f"  shap interventional : {median_ms(lambda: reference.explain(one), 20):9.2f}")
    print(f"  FastEngine          : {median_ms(lambda: fast.explain(one), 20):9.3f}")
    if woodelf is not None:
        print(f"  woodelf (5 calls)   : {median_ms(lambda: woodelf.explain(one), 5):9.2f}")
    print(f"  xgb pred_contribs   : {median_ms(lambda: contribs(one), 20):9.3f}  (path-dependent)")


def build_engines(booster, background: np.ndarray) -> tuple[FastEngine, ReferenceEngine]:
    """FastEngine and the shap reference over the background, timed; prints their set-up."""
    t0 = time.perf_counter()
    fast = FastEngine(booster, "xgboost", background)
    fast_init = time.perf_counter() - t0
    t0 = time.perf_counter()
    reference = ReferenceEngine(booster, background)
    ref_init = time.perf_counter() - t0
    print(
        f"FastEngine init (parse + background pass + tables): {fast_init:.2f} s "
        f"(incl. numba JIT/cache load on first model); {fast.n_leaves} leaves, "
        f"{fast.n_deep_leaves} deep, "
        f"tables {fast.table_bytes / 1e6:.1f} MB; shap explainer init {ref_init:.2f} s"
    )
    return fast, reference


def check_fast_engine(
    booster, fast: FastEngine, reference: ReferenceEngine, pool: np.ndarray, check_rows
) -> None:
    """FastEngine's agreement with shap and its additivity against the model's margin."""
    report = verify(fast, reference, check_rows, tolerance=1e-6)
    print(
        f"agreement with shap on {report['rows']} rows: max |dvalue| {report['max_abs_value_diff']:.2e}, "
        f"|dbase| {report['base_diff']:.2e}, passed={report['passed']}"
    )
    margins = model_margin(booster, pool[:10000])
    errors = additivity_errors(fast.explain(pool[:10000]), margins)
    print(f"FastEngine additivity vs output_margin on 10,000 rows: max {errors.max():.2e}")


def checked_woodelf(booster, background, columns, reference: ReferenceEngine, check_rows, skip_woodelf):
    """The woodelf engine, compared with shap on the check rows; None when skipped."""
    woodelf = None if skip_woodelf else WoodelfEngine(booster, background, feature_names=columns)
    if woodelf is not None:
        w = woodelf.explain(check_rows)
        r = reference.explain(check_rows)
        err = additivity_errors(w, model_margin(booster, check_rows))
        print(
            f"woodelf vs shap on 300 rows: max |dvalue| {np.abs(w.values - r.values).max():.2e}, "
            f"|dbase| (base computed here) {abs(w.base_value - r.base_value):.2e}, "
            f"rows non-additive (>1e-4) {(err > 1e-4).sum()}"
        )
    return woodelf


def throughput(pool: np.ndarray, sizes, reference, fast, woodelf, contribs) -> None:
    print("throughput (rows/s):")
    header = f"  {'rows':>8} {'shap':>14} {'FastEngine':>12} {'woodelf':>14} {'pred_contribs':>14}"
    print(header)
    for size in sizes:
        rows = pool[:size]
        shap_rate, shap_x = rate(reference.explain, rows, SHAP_MAX_ROWS)
        fast_rate, _ = rate(fast.explain, rows)
        if woodelf is not None:
            wood_rate, wood_x = rate(woodelf.explain, rows, WOODELF_MAX_ROWS)
            wood = f"{wood_rate:>13,.0f}{'*' if wood_x else ' '}"
        else:
            wood = f"{'-':>14}"
        contrib_rate, _ = rate(contribs, rows)
        print(
            f"  {size:>8,} {shap_rate:>13,.0f}{'*' if shap_x else ' '} {fast_rate:>12,.0f} {wood} "
            f"{contrib_rate:>14,.0f}   peak RSS {peak_rss_mb():,.0f} MB"
        )
    print(
        f"  * measured on the first {SHAP_MAX_ROWS:,} (shap) / {WOODELF_MAX_ROWS:,} (woodelf) rows and "
        "extrapolated per row\n"
    )


def bench_model(n_trees, depth, X, y, columns, background, pool, sizes, skip_woodelf) -> None:
    import xgboost as xgb

    params = {"max_depth": depth, "eta": 0.05, "objective": "binary:logistic", "seed": 0, "nthread": 2}
    booster = xgb.train(params, xgb.DMatrix(X, label=y), n_trees)
    print(f"== XGBoost {n_trees} trees depth {depth} ==")

    fast, reference = build_engines(booster, background)
    check_rows = pool[:300]
    check_fast_engine(booster, fast, reference, pool, check_rows)
    woodelf = checked_woodelf(booster, background, columns, reference, check_rows, skip_woodelf)

    def contribs(rows, booster=booster):
        return booster.predict(xgb.DMatrix(rows), pred_contribs=True)

    single_row_latency(pool[:1], reference, fast, woodelf, contribs)
    throughput(pool, sizes, reference, fast, woodelf, contribs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--background", type=int, default=500)
    parser.add_argument("--skip-woodelf", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    name, X, y, columns = load_cohort()
    rng = np.random.default_rng(16)
    background = X[rng.choice(X.shape[0], args.background, replace=False)]
    pool = X[rng.integers(0, X.shape[0], max(sizes))]
    print(f"data: {name}, {X.shape[0]} patients x {X.shape[1]} features, NaN {np.isnan(X).mean():.1%}")
    print(f"background: {background.shape[0]} rows; scored rows resampled from the cohort")
    print("machine: 2 cores shared; FastEngine uses numba (parallel kernel for batches >= 64 rows)\n")

    for n_trees, depth in ((200, 4), (300, 6)):
        bench_model(n_trees, depth, X, y, columns, background, pool, sizes, args.skip_woodelf)
    print(f"peak RSS of this process: {peak_rss_mb():,.0f} MB")


if __name__ == "__main__":
    main()
