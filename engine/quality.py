"""Data-quality flags: values a clinician would read as impossible or as recording artefacts.

A bundle's numeric feature may declare `expected: [low, high]`, the range in which a value is an
ordinary observation (bundle.yaml, optional); its `range` is what ingest accepts at all. A value
outside its expected range is flagged, and says which way it reads:

- recorded as 0 while 0 lies outside the expected range ("heart rate recorded as 0: check the
  source"): the classic artefact of a disconnected lead or a default;
- exactly at the edge of the accepted range (a clipped or default value), even where the expected
  range reaches that edge;
- otherwise outside the expected range.

A feature without an expected range is never flagged: many scores and counts sit at the edge of
their range as their most ordinary value (a coma score of 0, a urine output of 0 in anuria), and
only the bundle knows which values are artefacts.

Flags are stored with each explanation and shown beside the value; they never change the score.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class QualitySpec:
    name: str
    label: str
    unit: str = ""
    accepted: tuple[float, float] | None = None  # the bundle's `range`
    expected: tuple[float, float] | None = None  # the bundle's `expected`, if any


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _span(bounds: tuple[float, float], unit: str) -> str:
    low, high = bounds
    return f"{low:g}–{high:g}{' ' + unit if unit else ''}"


def value_flag(value, spec: QualitySpec) -> dict | None:
    """The flag of one value (None when it reads as an ordinary observation or is not measured)."""
    number = _number(value)
    if number is None:
        return None
    unit = f" {spec.unit}" if spec.unit else ""
    shown = f"{number:g}{unit}"
    if spec.expected is None:
        return None
    low, high = spec.expected
    at_edge = spec.accepted is not None and number in spec.accepted
    if low <= number <= high and not at_edge:
        return None
    if number == 0 and not low <= 0 <= high:
        kind, text = (
            "zero",
            f"recorded as 0{unit}: check the source (expected {_span(spec.expected, spec.unit)})",
        )
    elif at_edge:
        kind = "range_edge"
        text = f"{shown} is at the edge of the accepted {_span(spec.accepted, spec.unit)}: check the source"
    else:
        kind, text = (
            "unexpected",
            f"{shown} is outside the expected {_span(spec.expected, spec.unit)}: check the source",
        )
    return {"feature": spec.name, "label": spec.label, "value": number, "kind": kind, "text": text}


def quality_flags(values: Mapping[str, object], specs: Iterable[QualitySpec]) -> list[dict]:
    """Every flagged value of one patient's inputs, in the specs' order. `values` maps a feature to
    its bare value or to its payload entry ({"value": ..., ...})."""
    flags = []
    for spec in specs:
        value = values.get(spec.name)
        if isinstance(value, Mapping):
            value = value.get("value")
        flag = value_flag(value, spec)
        if flag is not None:
            flags.append(flag)
    return flags
