"""The RHC demo cohort and the demo scoring run's payloads."""

from datetime import UTC, datetime

import numpy as np

from demo import rhc as demo_rhc


def test_cohort_label_units_and_missing_values():
    cohort = demo_rhc.load_cohort()

    assert len(cohort) == 5735
    assert abs(cohort["died_30d"].mean() - 0.334) < 0.001
    assert cohort["unit"].value_counts().to_dict() == {
        "MICU": 3941,
        "RESP-ICU": 457,
        "CCU": 456,
        "ONC-ICU": 445,
        "NEURO-ICU": 436,
    }
    assert set(cohort["shift"]) == {"day", "night"}
    # RHC's weight 0 means "not weighed": missing, never a value.
    assert cohort["weight"].isna().sum() == 515
    assert cohort["weight"].min() > 0
    assert cohort["urine_output_24h"].isna().sum() == 3028
    assert "surv2md1" not in " ".join(cohort.columns)
    for f in demo_rhc.FEATURES:
        if f.kind == "numeric":
            values = cohort[f.name].dropna()
            assert values.min() >= f.range[0] and values.max() <= f.range[1], f.name


def test_splits_are_deterministic_and_disjoint():
    cohort = demo_rhc.load_cohort()
    first = demo_rhc.split_cohort(cohort)
    second = demo_rhc.split_cohort(demo_rhc.load_cohort())

    assert first.scoring["pid"].tolist() == second.scoring["pid"].tolist()
    train, reference, scoring = (set(s["pid"]) for s in (first.train, first.reference, first.scoring))
    assert not (train & reference or train & scoring or reference & scoring)
    assert len(train) + len(reference) + len(scoring) == 5735
    assert set(first.background["pid"]) <= train
    assert len(first.background) == 500


def test_scoring_payloads_follow_the_contract():
    payloads = list(demo_rhc.scoring_payloads(model_name="icu-mortality-30d", model_version=1, limit=50))

    assert len(payloads) == 50
    first = payloads[0]
    assert first["model"] == "icu-mortality-30d" and first["model_version"] == 1
    assert first["patient"]["id"].startswith("RHC-")
    assert first["patient"]["display_name"].startswith("Simulated patient ")
    assert first["external_id"] == f"rhc-demo/2026-01-05T08:00Z/{first['patient']['id']}"
    assert "risk" not in first
    by_name = {f.name: f for f in demo_rhc.FEATURES}
    for payload in payloads:
        scored_at = datetime.fromisoformat(payload["scored_at"])
        assert scored_at <= demo_rhc.DEMO_RUN_AT
        assert "rhc_day1" not in payload["features"]
        assert set(payload["features"]) == set(demo_rhc.INPUT_NAMES)
        for name, entry in payload["features"].items():
            if entry["value"] is None:
                continue
            assert datetime.fromisoformat(entry["observed_at"]) < scored_at
            assert entry["source"]["system"] == by_name[name].source
            assert entry["source"]["reference"].startswith("Observation/sim-")
            assert "url" not in entry["source"]
            assert entry.get("unit") == by_name[name].unit
            if by_name[name].kind == "numeric":
                assert by_name[name].range[0] <= entry["value"] <= by_name[name].range[1]
    # At least one patient has urine output not measured: sent as null, not imputed.
    assert any(p["features"]["urine_output_24h"]["value"] is None for p in payloads)


def test_scoring_payloads_are_deterministic_per_run():
    run = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    first = list(demo_rhc.scoring_payloads(model_name="m", run_at=run, limit=5))
    again = list(demo_rhc.scoring_payloads(model_name="m", run_at=run, limit=5))
    default_run = list(demo_rhc.scoring_payloads(model_name="m", limit=5))

    assert first == again
    assert first[0]["external_id"].startswith("rhc-demo/2026-03-01T12:00Z/")
    assert first[0]["external_id"] != default_run[0]["external_id"]
    assert "model_version" not in first[0]


def test_scoring_payloads_encode_to_the_scoring_split(model_version):
    from models_registry.serving import serving_model

    model = serving_model(model_version)
    scoring = demo_rhc.split_cohort(demo_rhc.load_cohort()).scoring.head(20)
    payloads = list(demo_rhc.scoring_payloads(model_name="icu-mortality-30d", limit=20))

    rows = np.vstack([model.encode(p["features"]) for p in payloads])

    np.testing.assert_array_equal(rows, scoring[model.feature_names].to_numpy(dtype=np.float64))
    assert ((model.predict_risk(rows) > 0) & (model.predict_risk(rows) < 1)).all()


def test_demo_payloads_carry_the_study_s_sex_age_and_race_for_subgroup_monitoring():
    from demo.rhc import scoring_payloads

    payloads = list(scoring_payloads(model_name="icu-mortality-30d", limit=40))
    races = set()
    for payload in payloads:
        patient, features = payload["patient"], payload["features"]
        assert patient["sex"] == ("female" if features["sex_female"]["value"] == 1 else "male")
        assert patient["age"] == int(features["age"]["value"])
        races.add(patient["race"])
    assert races <= {"white", "black", "other"} and len(races) > 1
