"""Cohort SHAP aggregates and bounded samples. Plain numpy/pandas, no Django.

A slice is (unit, shift, day): day and shift are taken from the scoring time in the hospital's
time zone; the day shift runs 07:00-18:59. Aggregates are sums (count, sum, sum of |SHAP|) so they
add up across explanations, chunks and days. Samples are bottom-k by a hash of the prediction id:
the same prediction always has the same priority, so re-adding it is a no-op and the sample of a
union is the bottom-k of the union of samples.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import date, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from engine.shifts import shift_of_hour, shifts_of_hours

SLICE = ("unit", "shift", "day")


def slice_of(scored_at: datetime, time_zone: str) -> tuple[str, date]:
    """(shift, local day) of a scoring time."""
    local = scored_at.astimezone(ZoneInfo(time_zone))
    return shift_of_hour(local.hour).value, local.date()


def slices_of(scored_at: Sequence[datetime], time_zone: str) -> tuple[np.ndarray, np.ndarray]:
    """`slice_of` of many scoring times at once: (shifts, local days), one per time."""
    local = pd.DatetimeIndex(pd.to_datetime(list(scored_at), utc=True)).tz_convert(ZoneInfo(time_zone))
    return shifts_of_hours(np.asarray(local.hour)), np.asarray(local.date, dtype=object)


def priority(prediction_id: int) -> float:
    """A uniform number in [0, 1) fixed by the prediction id."""
    digest = hashlib.sha256(f"sightline-cohort/{prediction_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def priorities(prediction_ids: Sequence[int]) -> np.ndarray:
    return np.fromiter(map(priority, prediction_ids), dtype=np.float64, count=len(prediction_ids))


def aggregate(shap: np.ndarray, slices: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """Per (feature, unit, shift, day): count, total, total_abs of the SHAP values.

    slices: one row per SHAP row with columns unit, shift, day.
    """
    shap = np.asarray(shap, dtype=np.float64)
    if len(shap) == 0:
        return pd.DataFrame(columns=["feature", "unit", "shift", "day", "count", "total", "total_abs"])
    keys = slices[list(SLICE)].reset_index(drop=True)
    by = [keys[column] for column in SLICE]
    wide = pd.DataFrame(shap)  # columns 0..n-1: no clash with a feature named like a key
    total = wide.groupby(by, sort=True).sum()
    total_abs = wide.abs().groupby(by, sort=True).sum()
    count = wide.groupby(by, sort=True).size().to_numpy()
    groups, features = len(total), len(names)
    level = total.index.get_level_values
    out = pd.DataFrame(
        {
            "feature": np.repeat(np.asarray(names, dtype=object), groups),
            **{column: np.tile(level(column).to_numpy(), features) for column in SLICE},
            "count": np.tile(count, features),
            "total": total.to_numpy().T.ravel(),
            "total_abs": total_abs.to_numpy().T.ravel(),
        }
    )
    # Feature-major blocks, each already in slice order: a stable sort by name orders them all.
    return out.sort_values("feature", kind="stable").reset_index(drop=True)


def bottom_k(frame: pd.DataFrame, k: int) -> pd.DataFrame:
    """The k rows of smallest priority per (unit, shift, day)."""
    if frame.empty:
        return frame
    ordered = frame.sort_values(["unit", "shift", "day", "priority"], kind="stable")
    return ordered.groupby(["unit", "shift", "day"], sort=False).head(k).reset_index(drop=True)


def json_floats(values: np.ndarray) -> list:
    """NaN (not measured) as null."""
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(values, dtype=np.float64)]
