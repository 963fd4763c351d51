"""engine.quality: which values are flagged, and what the flag says."""

from engine.quality import QualitySpec, quality_flags, value_flag

HEART_RATE = QualitySpec("heart_rate", "Heart rate", "/min", accepted=(0, 300), expected=(20, 250))
LACTATE = QualitySpec("lactate", "Lactate", "mmol/L", accepted=(0.1, 30))  # no expected range


def test_a_zero_outside_the_expected_range_is_a_recording_artefact():
    flag = value_flag(0, HEART_RATE)
    assert flag["kind"] == "zero"
    assert flag["text"] == "recorded as 0 /min: check the source (expected 20–250 /min)"


def test_outside_expected_inside_accepted_is_flagged_with_its_value():
    flag = value_flag(12, HEART_RATE)
    assert flag["kind"] == "unexpected" and flag["value"] == 12.0
    assert flag["text"] == "12 /min is outside the expected 20–250 /min: check the source"


def test_the_edge_of_the_accepted_range_outside_the_expected_one_reads_as_clipped():
    flag = value_flag(300, HEART_RATE)
    assert flag["kind"] == "range_edge"
    assert flag["text"] == "300 /min is at the edge of the accepted 0–300 /min: check the source"


def test_without_an_expected_range_nothing_is_flagged():
    """A coma score of 0 or a urine output of 0 is an ordinary value: only the bundle can say otherwise."""
    for value in (0.1, 30, 4.2):
        assert value_flag(value, LACTATE) is None


def test_ordinary_missing_and_non_numeric_values_are_not_flagged():
    for value in (72, 20, 250, None, float("nan"), True, "72"):
        assert value_flag(value, HEART_RATE) is None
    assert value_flag(4.2, LACTATE) is None


def test_quality_flags_reads_payload_entries_and_keeps_the_specs_order():
    temperature = QualitySpec("temperature", "Temperature", "°C", accepted=(25, 45), expected=(30, 43))
    values = {"temperature": {"value": 29.5, "unit": "°C"}, "heart_rate": {"value": 0}, "lactate": 30}
    flags = quality_flags(values, [HEART_RATE, LACTATE, temperature])
    assert [(f["feature"], f["kind"]) for f in flags] == [
        ("heart_rate", "zero"),
        ("temperature", "unexpected"),
    ]


def test_the_edge_of_the_accepted_range_is_flagged_even_inside_the_expected_one():
    """A bundle whose expected range reaches its accepted edge: 250 is where a capped monitor stops."""
    capped = QualitySpec("heart_rate", "Heart rate", "/min", accepted=(0, 250), expected=(20, 250))
    flag = value_flag(250, capped)
    assert flag["kind"] == "range_edge"
    assert flag["text"] == "250 /min is at the edge of the accepted 0–250 /min: check the source"
    assert value_flag(249, capped) is None
    # A zero that is the accepted edge reads as a recorded zero, the likelier artefact.
    assert value_flag(0, capped)["kind"] == "zero"
