"""Cohort SHAP aggregates and bounded samples. Plain numpy/pandas, no Django.

A slice is (unit, shift, day): day and shift are taken from the scoring time in the hospital's
time zone; the day shift runs 07:00-18:59. Aggregates are sums (count, sum, sum of |SHAP|) so they
add up across explanations, chunks and days. Samples are bottom-k by a hash of the prediction id:
the same prediction always has the same priority, so re-adding it is a no-op and the sample of a
union is the bottom-k of the union of samples.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

DAY_SHIFT_HOURS = range(7, 19)


def slice_of(scored_at: datetime, time_zone: str) -> tuple[str, date]:
    """(shift, local day) of a scoring time."""
    local = scored_at.astimezone(ZoneInfo(time_zone))
    return ("day" if local.hour in DAY_SHIFT_HOURS else "night"), local.date()


def priority(prediction_id: int) -> float:
    """A uniform number in [0, 1) fixed by the prediction id."""
    digest = hashlib.sha256(f"sightline-cohort/{prediction_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def aggregate(shap: np.ndarray, slices: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """Per (feature, unit, shift, day): count, total, total_abs of the SHAP values.

    slices: one row per SHAP row with columns unit, shift, day.
    """
    shap = np.asarray(shap, dtype=np.float64)
    if len(shap) == 0:
        return pd.DataFrame(columns=["feature", "unit", "shift", "day", "count", "total", "total_abs"])
    keys = slices[["unit", "shift", "day"]].reset_index(drop=True)
    frames = []
    for j, name in enumerate(names):
        frame = keys.copy()
        frame["feature"] = name
        frame["total"] = shap[:, j]
        frame["total_abs"] = np.abs(shap[:, j])
        frames.append(frame)
    long = pd.concat(frames, ignore_index=True)
    out = (
        long.groupby(["feature", "unit", "shift", "day"], sort=True)
        .agg(count=("total", "size"), total=("total", "sum"), total_abs=("total_abs", "sum"))
        .reset_index()
    )
    return out


def bottom_k(frame: pd.DataFrame, k: int) -> pd.DataFrame:
    """The k rows of smallest priority per (unit, shift, day)."""
    if frame.empty:
        return frame
    ordered = frame.sort_values(["unit", "shift", "day", "priority"], kind="stable")
    return ordered.groupby(["unit", "shift", "day"], sort=False).head(k).reset_index(drop=True)


def json_floats(values: np.ndarray) -> list:
    """NaN (not measured) as null."""
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(values, dtype=np.float64)]
