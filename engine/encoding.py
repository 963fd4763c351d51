"""How a posted feature value becomes a model input: the one rule, used by serving (ingest, the
cohort job, what-if) and by monitoring (drift of the stored inputs).

- not measured (None, NaN) -> NaN; a model that cannot take a missing value refuses it (serving);
- binary: true/false as JSON booleans, 0/1 (also 0.0/1.0), or the strings "true"/"false"/"1"/"0"
  -> 1.0/0.0;
- categorical: one of the bundle's categories (a string) -> its index;
- numeric: a finite number (or a string holding one); a boolean is not a number.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import NoneType
from typing import Any

import numpy as np

_TRUE = {True, "true", "True", "1"}  # True == 1 == 1.0 in a set
_FALSE = {False, "false", "False", "0"}  # False == 0 == 0.0


class EncodingError(ValueError):
    """A value the model cannot take (unknown category, not a number); names the feature."""

    def __init__(self, feature: str, message: str) -> None:
        super().__init__(message)
        self.feature = feature


@dataclass(frozen=True)
class Codec:
    """One model input: its name, kind (numeric, binary or categorical) and categories, in order."""

    name: str
    kind: str
    categories: Sequence[str] = ()


def bare(value: Any) -> Any:
    """A payload entry ({"value": 4.2, ...}) or a bare value, as the bare value."""
    return value.get("value") if isinstance(value, Mapping) else value


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def encode_value(codec: Codec, value: Any) -> float:
    """A measured value as the model's input; raises EncodingError naming the feature."""
    if codec.kind == "binary":
        if isinstance(value, bool | int | float | str) and value in _TRUE:
            return 1.0
        if isinstance(value, bool | int | float | str) and value in _FALSE:
            return 0.0
        raise EncodingError(codec.name, f"{codec.name} is binary: expected true or false, got {value!r}.")
    if codec.kind == "categorical":
        if isinstance(value, str) and value in codec.categories:
            return float(list(codec.categories).index(value))
        raise EncodingError(
            codec.name, f"{codec.name} must be one of {', '.join(codec.categories)}; got {value!r}."
        )
    if isinstance(value, bool):
        raise EncodingError(codec.name, f"{codec.name} must be a number, got {value!r}.")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise EncodingError(codec.name, f"{codec.name} must be a number, got {value!r}.") from None
    if not np.isfinite(number):
        raise EncodingError(codec.name, f"{codec.name} must be a finite number, got {value!r}.")
    return number


def encode_column_fast(codec: Codec, column: list) -> np.ndarray | None:
    """A column of bare values encoded with numpy, exactly as encode_value would (missing -> NaN),
    or None when some value needs encode_value's one-by-one path (or would be refused by it)."""
    kinds = set(map(type, column))
    if codec.kind == "categorical":
        if not kinds <= {str, NoneType}:
            return None
        index = {category: float(i) for i, category in reversed(list(enumerate(codec.categories)))}
        try:
            encoded = np.array([np.nan if v is None else index[v] for v in column], dtype=np.float64)
        except KeyError:
            return None
    elif kinds <= ({bool, int, float, NoneType} if codec.kind == "binary" else {int, float, NoneType}):
        try:
            encoded = np.array(column, dtype=np.float64)  # None -> NaN (not measured)
        except OverflowError:
            return None
    else:
        return None
    missing = np.isnan(encoded)
    if codec.kind == "binary" and not np.isin(encoded[~missing], (0.0, 1.0)).all():
        return None
    if np.isinf(encoded).any():
        return None
    return encoded


def encode_column_lenient(codec: Codec, column: list) -> np.ndarray:
    """A column of stored values as model inputs for monitoring: what serving would encode, with
    NaN for a value not measured and for one serving would refuse (an old row, a changed schema)."""
    column = [bare(v) for v in column]
    encoded = encode_column_fast(codec, column)
    if encoded is not None:
        return encoded
    out = np.full(len(column), np.nan, dtype=np.float64)
    for i, value in enumerate(column):
        if is_missing(value):
            continue
        with contextlib.suppress(EncodingError):
            out[i] = encode_value(codec, value)
    return out
