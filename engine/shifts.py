"""The one shift rule: the day shift runs 07:00-18:59 in the hospital's local time; the rest of the
day (19:00-06:59) is the night shift. Cohort slices, monitoring slices and the demo's simulated
scoring times all ask here.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np

# Local hours of the day shift: 7 up to, not including, 19.
DAY_SHIFT_HOURS = range(7, 19)


class Shift(StrEnum):
    DAY = "day"
    NIGHT = "night"


def shift_of_hour(hour: int) -> Shift:
    return Shift.DAY if hour in DAY_SHIFT_HOURS else Shift.NIGHT


def shifts_of_hours(hours) -> np.ndarray:
    """shift_of_hour over an array of local hours: an object array of shift names."""
    hours = np.asarray(hours)
    day = (hours >= DAY_SHIFT_HOURS.start) & (hours < DAY_SHIFT_HOURS.stop)
    return np.where(day, Shift.DAY.value, Shift.NIGHT.value).astype(object)
