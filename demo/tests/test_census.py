"""The demo census: beds, stays and repeated scores, simulated around real RHC values."""

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from demo import rhc
from demo.census import BEDS, DAYS, SCORE_EVERY_HOURS, census_payloads, census_stays

CLOCK = datetime(2026, 12, 3, 13, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def payloads():
    return list(census_payloads(model_name="icu-mortality-30d", clock=CLOCK))


def test_each_bed_holds_at_most_one_patient_at_a_time():
    stays = census_stays(clock=CLOCK)
    by_bed: dict = {}
    for stay in stays:
        by_bed.setdefault((stay.unit, stay.bed), []).append(stay)
    assert set(by_bed) <= {(unit, str(bed)) for unit, n in BEDS.items() for bed in range(1, n + 1)}
    for bed_stays in by_bed.values():
        ordered = sorted(bed_stays, key=lambda s: s.admitted_at)
        assert ordered[-1].discharged_at is None  # the bed's current patient
        for earlier, later in zip(ordered, ordered[1:], strict=False):
            assert earlier.discharged_at is not None and earlier.discharged_at < later.admitted_at
    assert len({stay.row.pid for stay in stays}) == len(stays)  # a patient has one stay
    assert {stay.unit for stay in stays} == set(BEDS)
    assert all(stay.unit == stay.row.unit for stay in stays)  # the unit the RHC category gives


def test_patients_are_scored_through_their_stay_and_the_day_1_score_is_real(payloads):
    per_patient = Counter(p["patient"]["id"] for p in payloads)
    assert max(per_patient.values()) >= 8 and sum(n > 1 for n in per_patient.values()) > 0.8 * len(
        per_patient
    )
    assert len({p["external_id"] for p in payloads}) == len(payloads)
    times = [datetime.fromisoformat(p["scored_at"].replace("Z", "+00:00")) for p in payloads]
    assert times == sorted(times) and max(times) <= CLOCK and min(times) >= CLOCK - timedelta(days=DAYS + 6)
    scoring = rhc.split_cohort(rhc.load_cohort()).scoring.set_index("pid")
    monitor = [f for f in rhc.INPUT_FEATURES if f.source == "monitor"]
    real_scores = varied = 0
    for payload in payloads:
        pid = int(payload["patient"]["id"].split("-")[1])
        hours = int(payload["external_id"].rsplit("/h", 1)[1])
        assert hours % SCORE_EVERY_HOURS == 0
        for f in rhc.INPUT_FEATURES:
            sent, real = payload["features"][f.name]["value"], scoring.loc[pid, f.name]
            if f in monitor and hours != 24 and sent not in (None, 0):
                # Within 10% of the real day-1 value (temperature within 0.5 degC), inside the range.
                spread = 0.5 if f.name == "temperature" else 0.1 * abs(real)
                assert abs(sent - real) <= spread + 10 ** -(f.decimals or 0)
                varied += sent != real
            elif sent is None:
                assert real != real  # NaN: not measured stays not measured
            elif f.kind == "numeric":
                assert sent == real
        real_scores += hours == 24
    assert real_scores > 0 and varied > 0


def test_the_census_is_deterministic_for_its_clock(payloads):
    again = list(census_payloads(model_name="icu-mortality-30d", clock=CLOCK, limit=50))
    assert again == payloads[:50]
    later = list(census_payloads(model_name="icu-mortality-30d", clock=CLOCK + timedelta(days=1), limit=50))
    assert {p["external_id"] for p in later}.isdisjoint({p["external_id"] for p in payloads})
