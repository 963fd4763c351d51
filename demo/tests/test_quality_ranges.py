"""The demo bundle's expected ranges flag the RHC cohort's recording artefacts, and little else."""

import pytest

from demo import rhc
from engine.quality import QualitySpec, quality_flags, value_flag


def _specs() -> dict[str, QualitySpec]:
    return {
        f.name: QualitySpec(f.name, f.label, f.unit or "", accepted=f.range, expected=f.expected)
        for f in rhc.INPUT_FEATURES
        if f.kind == "numeric"
    }


@pytest.fixture(scope="module")
def cohort():
    return rhc.load_cohort()


@pytest.mark.parametrize(
    ("name", "value", "kind"),
    [
        ("wbc", 0.0, "zero"),
        ("albumin", 29.0, "unexpected"),
        ("hematocrit", 2.0, "unexpected"),
        ("paco2", 1.0, "unexpected"),
        ("potassium", 11.9, "unexpected"),
        ("pf_ratio", 12.0, "unexpected"),
        ("ph", 6.58, "unexpected"),
        ("heart_rate", 250.0, "unexpected"),
        ("heart_rate", 0.0, "zero"),
    ],
)
def test_values_recorded_in_the_demo_cohort_that_no_patient_has_are_flagged(cohort, name, value, kind):
    assert (cohort[name] == value).any()  # the value is in the demo data, not made up
    flag = value_flag(value, _specs()[name])
    assert flag is not None and flag["kind"] == kind
    assert "check the source" in flag["text"]


def test_the_labs_have_expected_ranges_and_flag_under_one_percent_of_real_values(cohort):
    specs = _specs()
    labs = [f.name for f in rhc.INPUT_FEATURES if f.source == "LIS"]
    assert labs and all(specs[name].expected is not None for name in labs)
    total = 0
    for name in labs:
        measured = cohort[name].dropna()
        flagged = sum(value_flag(v, specs[name]) is not None for v in measured)
        assert flagged < 0.01 * len(measured), (name, flagged)  # a flag stays worth reading
        total += flagged
    assert total > 0


def test_a_demo_payload_carries_its_flags(cohort):
    row = cohort[cohort["albumin"] == 29.0].iloc[0]
    flags = quality_flags({n: row[n] for n in _specs()}, _specs().values())
    assert {"feature": "albumin", "kind": "unexpected"}.items() <= next(
        f for f in flags if f["feature"] == "albumin"
    ).items()
