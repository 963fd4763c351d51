"""Subgroup monitoring (issue 18): a miscalibration injected into one subgroup of one unit is flagged
there and nowhere else, and every figure equals fairlearn / scikit-learn on the same rows."""

import math
from datetime import timedelta

import numpy as np
import pytest
from fairlearn.metrics import MetricFrame
from sklearn.metrics import roc_auc_score

from monitoring.selectors import Slice
from monitoring.subgroups import subgroup_window
from patients.models import Alert, Encounter, Patient, Prediction
from tests.fixtures.factories import model_version_create
from tests.fixtures.subgroup_ward import END, START, UNDER_PREDICTED, UNITS, ward_create


@pytest.fixture
def ward(db):
    return ward_create()


def _calibration_flags(result: dict) -> set[tuple[str, str]]:
    return {(f["subgroup"], f["group"]) for f in result["flags"] if f["kind"] == "calibration_in_large"}


def test_injected_miscalibration_is_flagged_in_its_unit_and_subgroup_only(ward):
    micu = subgroup_window(version=ward, start=START, end=END, where=Slice("unit", "MICU"), n_boot=10)
    assert _calibration_flags(micu) == {("Age", "80+")}
    flag = next(f for f in micu["flags"] if f["kind"] == "calibration_in_large")
    assert flag["difference"] == pytest.approx(-UNDER_PREDICTED, abs=0.01)
    assert "In 80+ the model under-predicts" in flag["message"]
    for where in [Slice("overall"), *(Slice("unit", u) for u in UNITS if u != "MICU"), Slice("shift", "day")]:
        assert (
            _calibration_flags(subgroup_window(version=ward, start=START, end=END, where=where, n_boot=10))
            == set()
        ), where
    assert micu["sorted"][0]["group"] == "80+" and micu["sorted"][0]["subgroup"] == "Age"


def test_every_figure_equals_fairlearn_and_sklearn_on_the_same_rows(ward):
    result = subgroup_window(version=ward, start=START, end=END, where=Slice("unit", "MICU"), n_boot=10)
    rows = Prediction.objects.filter(unit="MICU").select_related("patient", "encounter__outcome")
    risk = np.array([p.risk for p in rows])
    died = np.array([p.encounter.outcome.outcome for p in rows], dtype=int)
    sex = np.array([p.patient.sex for p in rows])
    assert (result["encounters"], result["with_outcome"]) == (len(rows), len(rows))

    by_sex = next(r for r in result["subgroups"] if r["subgroup"]["column"] == "sex")
    frame = MetricFrame(metrics=roc_auc_score, y_true=died, y_pred=risk, sensitive_features=sex)
    for group, auroc in frame.by_group.items():
        entry = by_sex["performance"]["groups"][group]
        assert entry["metrics"]["auroc"]["value"] == pytest.approx(auroc, abs=1e-12)
        mask = sex == group
        assert (entry["n"], entry["events"]) == (int(mask.sum()), int(died[mask].sum()))
        estimate = by_sex["estimate"]["groups"][group]["metrics"]
        assert estimate["expected_event_rate"] == {
            "value": pytest.approx(risk[mask].mean()),
            "estimate": True,
        }
        burden = by_sex["burden"]["groups"][group]["metrics"]
        assert burden["alerts_per_100_medium"]["value"] == pytest.approx(100 * np.mean(risk[mask] >= 0.25))
    assert by_sex["estimate"]["estimate"] is True


def test_override_rate_by_reason_per_subgroup(ward, charlie):
    from patients.models import AlertAction

    alerts = list(Alert.objects.filter(unit="CCU").select_related("patient").order_by("pk"))
    women = [a for a in alerts if a.patient.sex == "female"]
    # As clinician_ui.services.alert_action_record stores them (monitoring may not import it).
    AlertAction.objects.bulk_create(
        AlertAction(alert=alert, user=charlie, role="admin", action="dismiss", reason="already_aware",
                    shown_at=START, seconds_to_decision=30.0, idempotency_key=f"k{alert.pk}")
        for alert in women[:10]
    )  # fmt: skip
    result = subgroup_window(version=ward, start=START, end=END, where=Slice("unit", "CCU"), n_boot=10)
    by_sex = next(r for r in result["subgroups"] if r["subgroup"]["column"] == "sex")["burden"]["groups"]
    female, male = by_sex["female"]["actions"], by_sex["male"]["actions"]
    assert female["alerts_with_actions"] == len(women)
    assert female["override_rate"] == pytest.approx(10 / len(women))
    assert female["override_rate_by_reason"] == {"already_aware": pytest.approx(10 / len(women))}
    assert male["override_rate"] == 0.0 and male["share_by_action"]["none"] == 1.0


def test_subgroup_json_for_admins_only_with_the_chart_data(
    ward, charlie_client, alice_client, client, settings
):
    from django.core.cache import cache

    cache.clear()
    settings.SUBGROUP_MONITORING_RESAMPLES = 10
    query = {"version": ward.pk, "from": START.isoformat(), "to": END.isoformat(), "slice": "unit:MICU"}
    assert client.get("/monitoring/data/subgroups/", query).status_code == 401
    assert alice_client.get("/monitoring/data/subgroups/", query).status_code == 403

    response = charlie_client.get("/monitoring/data/subgroups/", query)

    assert response.status_code == 200
    body = response.json()
    assert [t["subgroup"] for t in body["calibration"]] == [
        "Unit",
        "Shift",
        "Sex",
        "Age",
        "Race",
        "Ethnicity",
    ]
    age = next(t for t in body["calibration"] if t["subgroup"] == "Age")
    old = next(p for p in age["points"] if p["group"] == "80+")
    assert age["estimate"] is False and old["rate"] - old["mean_risk"] == pytest.approx(
        UNDER_PREDICTED, abs=0.01
    )
    assert old["low"] < old["rate"] < old["high"]
    ethnicity = next(t for t in body["calibration"] if t["subgroup"] == "Ethnicity")
    assert [p["group"] for p in ethnicity["points"]] == ["not recorded"]  # none was posted
    assert any(f["kind"] == "calibration_in_large" and f["group"] == "80+" for f in body["flags"])
    page = charlie_client.get("/monitoring/").content.decode()
    assert 'id="subgroups-section"' in page and "monitoring/subgroups.js" in page


def test_the_bundle_s_declared_subgroups_split_the_window_like_the_card(db):
    """CONTRACT section 1: declared subgroups are reported in monitoring too. A declared model input
    reads each score's posted value (yes/no sent as JSON booleans or 0/1) with the bundle's labels and
    bands; a column monitoring cannot see is listed with the reason; a demographic the bundle already
    covers by label is not reported twice."""
    version = model_version_create()
    version.spec = {
        **version.spec,
        "subgroups": [
            {
                "column": "ventilated",
                "label": "Ventilation",
                "values": {0: "not ventilated", 1: "ventilated"},
            },
            {"column": "age", "label": "Age", "bands": [50, 75], "protected": True},
            {"column": "insurance", "label": "Insurance"},
        ],
    }
    version.save(update_fields=["spec"])
    posted = [True, 1, False, 0, None] * 12
    for n, value in enumerate(posted):
        patient = Patient.objects.create(external_id=f"V-{n}", unit="MICU", sex="female")
        encounter = Encounter.objects.create(external_id=f"VE-{n}", patient=patient)
        risk = 0.2 + (n % 5) / 10
        Prediction.objects.create(
            registered_model=version.registered_model, model_version=version, external_id=f"v/{n}",
            patient=patient, encounter=encounter, unit="MICU", bed="1", scored_at=START + timedelta(hours=n),
            risk=risk, margin=math.log(risk / (1 - risk)), tier=version.tier_for(risk),
            payload_sha256="0" * 64, features={"ventilated": {"value": value}, "age": {"value": 40 + n}},
        )  # fmt: skip

    result = subgroup_window(version=version, start=START, end=END, where=Slice.parse("overall"), n_boot=0)

    by_label = {r["subgroup"]["label"]: r for r in result["subgroups"]}
    assert list(by_label) == ["Unit", "Shift", "Ventilation", "Age", "Sex", "Race", "Ethnicity"]
    assert by_label["Ventilation"]["group_order"] == ["not ventilated", "ventilated", "not recorded"]
    counts = {g: e["n"] for g, e in by_label["Ventilation"]["estimate"]["groups"].items()}
    assert counts == {"ventilated": 24, "not ventilated": 24, "not recorded": 12}
    assert by_label["Age"]["group_order"] == ["<50", "50-74", "75+"]  # the bundle's bands, not the default
    assert result["not_monitored"] == [
        {
            "column": "insurance",
            "label": "Insurance",
            "reason": "not a model input and not a patient field of the scoring payloads "
            "(sex, age, race, ethnicity)",
        }
    ]
