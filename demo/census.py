"""The demo's ward census: beds, stays and a score every few hours, simulated around real RHC values.

The RHC data set has one set of day-1 values per admission and no units, beds or times. The demo
builds a census from it that reads like a ward (all of it simulated, and labelled so):

* Each unit has a fixed number of beds (BEDS). Over the DAYS before the demo's clock, each bed holds
  one patient at a time: stays of 1 to 6 days with 7 to 12 hours between them, patients taken in
  turn from the unit's patients of the scoring split. So at the clock each bed holds at most one
  patient, and the worklist lists at most one per bed: the previous occupant's last score is over
  WORKLIST_LEFT_AFTER_HOURS (12) older than the unit's newest by the new one's first score.
* Each patient is scored every SCORE_EVERY_HOURS of the stay, up to their discharge (or the clock).
  The score at the end of ICU day 1 carries the real day-1 values. At every other score the bedside
  monitor's values (heart rate, blood pressure, respiratory rate within 10%, temperature within
  0.5 degC; a recorded zero kept) are simulated around them, so trends and "since previous score"
  have content; labs and everything else keep their real day-1 values.
* The clock is anchored once, when the demo is first loaded (demo.models.DemoClock), so the times
  read as recent and a second run posts the same payloads (same external ids): nothing twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd

from . import rhc

BEDS = {"MICU": 24, "CCU": 12, "RESP-ICU": 10, "ONC-ICU": 10, "NEURO-ICU": 10}
DAYS = 7
SCORE_EVERY_HOURS = 6
_STAY_HOURS = (24, 6 * 24)
_TURNOVER_HOURS = (7, 12)
_VARIATION = 0.10
# Temperature varies by degrees, not by a share of its value: within 0.5 degC of the recorded one.
_ABSOLUTE_VARIATION = {"temperature": 0.5}


@dataclass(frozen=True)
class Stay:
    row: object  # the patient's row of the scoring split (itertuples)
    unit: str
    bed: str
    admitted_at: datetime
    discharged_at: datetime | None  # None: still in the bed at the clock


def _between(low: int, high: int, *parts: object) -> int:
    return low + int(rhc._unit_interval(*parts) * (high - low + 1))


def census_stays(*, clock: datetime, seed: int = rhc.DEFAULT_SEED) -> list[Stay]:
    """Every stay of the census that overlaps the DAYS before `clock`, bed by bed, latest first."""
    scoring = rhc.split_cohort(rhc.load_cohort(seed), seed=seed).scoring
    start = clock - timedelta(days=DAYS)
    stays: list[Stay] = []
    for unit, beds in BEDS.items():
        patients = scoring[scoring["unit"] == unit].itertuples(index=False)
        for bed in range(1, beds + 1):
            # The current occupant was admitted some hours ago; earlier ones back to the start.
            discharged: datetime | None = None
            admitted = clock - timedelta(hours=_between(2, _STAY_HOURS[1], "now", unit, bed))
            while True:
                row = next(patients, None)
                if row is None:
                    break
                stays.append(Stay(row, unit, str(bed), admitted, discharged))
                if admitted <= start:
                    break
                gap = _between(*_TURNOVER_HOURS, "gap", unit, bed, row.pid)
                discharged = admitted - timedelta(hours=gap)
                admitted = discharged - timedelta(hours=_between(*_STAY_HOURS, "stay", unit, bed, row.pid))
    return stays


def _simulated_value(f: rhc.FeatureDef, real, hours: int, pid: int, seed: int):
    """A monitor value at `hours` into the stay: the real day-1 value at 24 h, else near it."""
    if f.source != "monitor" or f.kind != "numeric" or pd.isna(real) or real == 0 or hours == 24:
        return real
    draw = 2 * rhc._unit_interval(seed, pid, f.name, hours) - 1
    if f.name in _ABSOLUTE_VARIATION:
        value = real + _ABSOLUTE_VARIATION[f.name] * draw
    else:
        value = real * (1 + _VARIATION * draw)
    low, high = f.range
    value = min(max(value, low), high)
    return round(value, f.decimals) if f.decimals is not None else value


def census_payloads(
    *, model_name: str, clock: datetime, limit: int | None = None, seed: int = rhc.DEFAULT_SEED
) -> Iterator[dict]:
    """CONTRACT.md section 2 payloads of the census, oldest score first (`limit`: the first N)."""
    clock = clock.replace(microsecond=0)
    key = clock.strftime("%Y-%m-%dT%H:%MZ")
    scores = []
    for stay in census_stays(clock=clock, seed=seed):
        end = stay.discharged_at or clock
        hours = SCORE_EVERY_HOURS
        while stay.admitted_at + timedelta(hours=hours) <= end:
            scores.append((stay.admitted_at + timedelta(hours=hours), stay, hours))
            hours += SCORE_EVERY_HOURS
    scores.sort(key=lambda item: (item[0], item[1].row.pid))
    for scored_at, stay, hours in scores[:limit]:
        yield _payload(stay, scored_at, hours, model_name=model_name, key=key, seed=seed)


def _payload(stay: Stay, scored_at: datetime, hours: int, *, model_name: str, key: str, seed: int) -> dict:
    row, pid = stay.row, int(stay.row.pid)
    patient_id = f"RHC-{pid:04d}"
    values = row._replace(
        **{
            f.name: _simulated_value(f, getattr(row, f.name), hours, pid, seed)
            for f in rhc.INPUT_FEATURES
            if f.source == "monitor"
        }
    )
    features = rhc._payload_features(values, pid=pid, patient_id=patient_id, scored_at=scored_at, seed=seed)
    admission = {f.name for f in rhc.INPUT_FEATURES if f.source == "ADT"}
    for name, entry in features.items():
        if "source" in entry:
            entry["source"]["reference"] = f"Observation/sim-{patient_id}-{name}-h{hours}"
        if name in admission and "observed_at" in entry:
            entry["observed_at"] = rhc._iso(stay.admitted_at)
    return {
        "external_id": f"rhc-census/{key}/{patient_id}/h{hours}",
        "model": model_name,
        "patient": {
            "id": patient_id,
            "display_name": f"Simulated patient {pid:04d}",
            "unit": stay.unit,
            "bed": stay.bed,
            **rhc._demographics(row),
        },
        "encounter_id": f"RHC-E-{pid:04d}",
        "scored_at": rhc._iso(scored_at),
        "features": features,
    }
