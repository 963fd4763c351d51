"""Cohort SHAP aggregates and bounded samples. Plain numpy/pandas, no Django.

A slice is (unit, shift, day): day and shift are taken from the scoring time in the hospital's
time zone; the day shift runs 07:00-18:59. Aggregates are sums (count, sum, sum of |SHAP|) so they
add up across explanations, chunks and days. Samples are bottom-k by a hash of the prediction id:
the same prediction always has the same priority, so re-adding it is a no-op and the sample of a
union is the bottom-k of the union of samples.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
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
    shifts, days = local_slices(utc_microseconds(scored_at), time_zone)
    return shifts, days.astype(object)


def utc_microseconds(scored_at: Sequence[datetime]) -> np.ndarray:
    """Aware times as int64 microseconds since the epoch, UTC."""
    return pd.DatetimeIndex(pd.to_datetime(list(scored_at), utc=True)).as_unit("us").asi8


def local_slices(scored_at_us: np.ndarray, time_zone: str) -> tuple[np.ndarray, np.ndarray]:
    """(shift, local day) of scoring times given as UTC microseconds since the epoch (how the cohort
    job reads them): an object array of shift names and a datetime64[D] array of days."""
    utc = pd.DatetimeIndex(np.asarray(scored_at_us, dtype="datetime64[us]"), tz="UTC")
    local = utc.tz_convert(ZoneInfo(time_zone)).tz_localize(None)
    return shifts_of_hours(np.asarray(local.hour)), local.to_numpy().astype("datetime64[D]")


def priority(prediction_id: int) -> float:
    """A uniform number in [0, 1) fixed by the prediction id."""
    digest = hashlib.sha256(f"sightline-cohort/{prediction_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def priorities(prediction_ids: Sequence[int]) -> np.ndarray:
    return np.fromiter(map(priority, prediction_ids), dtype=np.float64, count=len(prediction_ids))


@dataclass(frozen=True)
class Slices:
    """Rows grouped by slice: `index` holds each row's slice number, and slice i is
    (units[i], shifts[i], days[i]); slices are numbered in (unit, shift, day) order."""

    index: np.ndarray
    units: np.ndarray
    shifts: np.ndarray
    days: np.ndarray

    def __len__(self) -> int:
        return len(self.units)


def slices_index(units: Sequence, shifts: Sequence, days: Sequence) -> Slices:
    """Number the distinct (unit, shift, day) of the rows in sorted order."""
    if len(units) == 0:
        empty = np.empty(0, dtype=object)
        return Slices(index=np.empty(0, dtype=np.int64), units=empty, shifts=empty, days=empty)
    codes, labels = [], []
    for column in (units, shifts, days):
        code, uniques = pd.factorize(np.asarray(column), sort=True)
        codes.append(code.astype(np.int64))
        labels.append(np.asarray(uniques))
    combined = (codes[0] * len(labels[1]) + codes[1]) * len(labels[2]) + codes[2]
    keys, index = np.unique(combined, return_inverse=True)
    unit_code, rest = np.divmod(keys, len(labels[1]) * len(labels[2]))
    shift_code, day_code = np.divmod(rest, len(labels[2]))
    return Slices(
        index=index.reshape(-1),
        units=labels[0][unit_code],
        shifts=labels[1][shift_code],
        days=labels[2][day_code],
    )


def slice_sums(shap: np.ndarray, slices: Slices) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(count per slice, sum of SHAP per slice and feature, sum of |SHAP| per slice and feature).

    pandas' grouped sums (compensated) on the slice numbers: the same figures as grouping on the
    (unit, shift, day) columns themselves, to the last bit.
    """
    shap = np.asarray(shap, dtype=np.float64)
    count = np.bincount(slices.index, minlength=len(slices))
    wide = pd.DataFrame(shap)  # every slice holds at least one row
    total = wide.groupby(slices.index, sort=True).sum().to_numpy()
    total_abs = wide.abs().groupby(slices.index, sort=True).sum().to_numpy()
    return count, total.reshape(len(slices), shap.shape[1]), total_abs.reshape(len(slices), shap.shape[1])


def aggregate(shap: np.ndarray, slices: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """Per (feature, unit, shift, day): count, total, total_abs of the SHAP values, in (feature,
    unit, shift, day) order.

    slices: one row per SHAP row with columns unit, shift, day.
    """
    shap = np.asarray(shap, dtype=np.float64)
    if len(shap) == 0:
        return pd.DataFrame(columns=["feature", "unit", "shift", "day", "count", "total", "total_abs"])
    groups = slices_index(*(slices[column].to_numpy() for column in SLICE))
    count, total, total_abs = slice_sums(shap, groups)
    n, order = len(groups), np.argsort(np.asarray(names, dtype=object), kind="stable")
    return pd.DataFrame(
        {
            "feature": np.repeat(np.asarray(names, dtype=object)[order], n),
            "unit": np.tile(groups.units, len(names)),
            "shift": np.tile(groups.shifts, len(names)),
            "day": np.tile(groups.days, len(names)),
            "count": np.tile(count, len(names)),
            "total": total.T[order].ravel(),
            "total_abs": total_abs.T[order].ravel(),
        }
    )


def bottom_k_rows(slices: Slices, priority: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k rows of smallest priority per slice, by slice then priority (ties: the
    earlier row first)."""
    order = np.lexsort((np.asarray(priority), slices.index))
    index = slices.index[order]
    first = np.searchsorted(index, index, side="left")  # each row's slice starts here in `order`
    return order[np.arange(len(order)) - first < k]


class SliceBounds:
    """The k smallest priorities seen per slice, fed a batch of (slice, priority) at a time: a
    slice's bound is its k-th smallest (infinite until it has k), and a row whose priority is above
    its slice's bound is not among the k smallest of the slice."""

    def __init__(self, k: int):
        self.k = k
        self._smallest: dict[tuple, np.ndarray] = {}

    def add(self, slices: Sequence[tuple], priority: Sequence[float]) -> None:
        grouped: dict[tuple, list[float]] = {}
        for key, p in zip(slices, priority, strict=True):
            grouped.setdefault(key, []).append(p)
        for key, new in grouped.items():
            merged = np.concatenate([self._smallest.get(key, np.empty(0)), np.asarray(new, dtype=np.float64)])
            self._smallest[key] = np.sort(merged)[: self.k]

    def bounds(self, slices: Sequence[tuple]) -> np.ndarray:
        """Each slice's bound."""
        out = np.full(len(slices), np.inf)
        for i, key in enumerate(slices):
            smallest = self._smallest.get(key)
            if smallest is not None and len(smallest) == self.k:
                out[i] = smallest[-1]
        return out


def bottom_k(frame: pd.DataFrame, k: int) -> pd.DataFrame:
    """The k rows of smallest priority per (unit, shift, day)."""
    if frame.empty:
        return frame
    groups = slices_index(*(frame[column].to_numpy() for column in SLICE))
    kept = bottom_k_rows(groups, frame["priority"].to_numpy(), k)
    return frame.iloc[kept].reset_index(drop=True)


def json_floats(values: np.ndarray) -> list:
    """NaN (not measured) as null."""
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(values, dtype=np.float64)]


def json_float_rows(matrix: np.ndarray) -> list[str]:
    """Each row of `matrix` as the JSON text of `json_floats(row)` (NaN and infinities as null)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    finite = np.where(np.isfinite(matrix), matrix, np.nan)
    # The encoder writes a NaN as NaN, which no number's text contains.
    return [_JSON.encode(row).replace("NaN", "null") for row in finite.tolist()]


_JSON = json.JSONEncoder()
