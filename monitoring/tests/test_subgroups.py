"""Subgroup monitoring (issue 18): a miscalibration injected into one subgroup of one unit is flagged
there and nowhere else, and every figure equals fairlearn / scikit-learn on the same rows."""

import math
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import MetricFrame
from scipy.special import expit, logit
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)

from engine.subgroups import Subgroup
from monitoring.selectors import Slice
from monitoring.subgroup_specs import group_value
from monitoring.subgroups import calibration_points, subgroup_window
from patients.models import Alert, AlertAction, Encounter, Outcome, Patient, Prediction
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
    elsewhere = [
        Slice("overall"),
        *(Slice("unit", u) for u in UNITS if u != "MICU"),
        Slice("shift", "day"),
        Slice("shift", "night"),
    ]
    for where in elsewhere:
        result = subgroup_window(version=ward, start=START, end=END, where=where, n_boot=10)
        assert _calibration_flags(result) == set(), where
        assert [f for f in result["flags"] if f["kind"] == "auroc_below_overall"] == [], where
    assert micu["sorted"][0]["group"] == "80+" and micu["sorted"][0]["subgroup"] == "Age"


def _micu_rows():
    """MICU's encounters in the order the window reads them (by encounter), as plain arrays."""
    rows = list(
        Prediction.objects.filter(unit="MICU")
        .select_related("patient", "encounter__outcome")
        .order_by("encounter_id")
    )
    risk = np.array([p.risk for p in rows])
    died = np.array([p.encounter.outcome.outcome for p in rows], dtype=int)
    sex = np.array([p.patient.sex for p in rows])
    return rows, risk, died, sex


def _ece(y, p):
    bins = np.minimum((p * 10).astype(int), 9)
    return sum((bins == b).mean() * abs(p[bins == b].mean() - y[bins == b].mean()) for b in set(bins))


def test_every_figure_equals_fairlearn_and_sklearn_on_the_same_rows(ward):
    result = subgroup_window(version=ward, start=START, end=END, where=Slice("unit", "MICU"), n_boot=10)
    rows, risk, died, sex = _micu_rows()
    assert (result["encounters"], result["with_outcome"]) == (len(rows), len(rows))

    by_sex = next(r for r in result["subgroups"] if r["subgroup"]["column"] == "sex")
    groups = pd.Series(sex, name="group")
    frame = MetricFrame(
        metrics=roc_auc_score, y_true=died, y_pred=risk, sensitive_features=groups,
        n_boot=10, ci_quantiles=[0.025, 0.975], random_state=0,
    )  # fmt: skip
    for group, auroc in frame.by_group.items():
        entry = by_sex["performance"]["groups"][group]
        mask = sex == group
        y, p, m = died[mask], risk[mask], entry["metrics"]
        assert m["auroc"]["value"] == pytest.approx(auroc, abs=1e-12)
        # the engine seeds its bootstrap: the same resamples as an independent MetricFrame run
        assert (m["auroc"]["ci_low"], m["auroc"]["ci_high"]) == pytest.approx(
            (frame.by_group_ci[0][group], frame.by_group_ci[1][group]), abs=1e-12
        )
        assert (entry["n"], entry["events"]) == (int(mask.sum()), int(y.sum()))
        assert m["auprc"]["value"] == pytest.approx(average_precision_score(y, p), abs=1e-12)
        assert m["brier"]["value"] == pytest.approx(brier_score_loss(y, p), abs=1e-12)
        assert m["ece"]["value"] == pytest.approx(_ece(y, p), abs=1e-12)
        fit = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000).fit(logit(p)[:, None], y)
        assert m["calibration_slope"]["value"] == pytest.approx(fit.coef_[0, 0], abs=1e-4)
        a = m["calibration_intercept"]["value"]  # offset logistic (slope 1): its score equation is 0
        assert np.sum(y - expit(a + logit(p))) == pytest.approx(0, abs=1e-6)
        for tier, t in ward.thresholds.items():
            assert m[f"sensitivity_{tier}"]["value"] == pytest.approx(recall_score(y, p >= t), abs=1e-12)
            assert m[f"ppv_{tier}"]["value"] == pytest.approx(precision_score(y, p >= t), abs=1e-12)
        estimate = by_sex["estimate"]["groups"][group]["metrics"]
        assert estimate["expected_event_rate"] == {"value": pytest.approx(p.mean()), "estimate": True}
        for tier, t in ward.thresholds.items():
            assert estimate[f"sensitivity_{tier}"]["value"] == pytest.approx(p[p >= t].sum() / p.sum())
            assert estimate[f"ppv_{tier}"]["value"] == pytest.approx(p[p >= t].mean())
        assert estimate["auroc"]["estimate"] is True and 0.5 < estimate["auroc"]["value"] < 1
        burden = by_sex["burden"]["groups"][group]
        assert burden["metrics"]["alerts_per_100_medium"]["value"] == pytest.approx(100 * np.mean(p >= 0.25))
        assert burden["actions"]["alerts_with_actions"] == int((p >= 0.25).sum())
        assert burden["actions"]["share_by_action"]["none"] == 1.0  # nobody acted in the ward
        assert burden["actions"]["acted_on_share"] == 0.0 and burden["actions"]["override_rate"] == 0.0
    assert by_sex["estimate"]["estimate"] is True
    assert by_sex["basis"] == {"overall": "performance", "female": "performance", "male": "performance"}
    measured = [r for r in result["sorted"] if r["subgroup"] == "Sex" and r["metric"] == "auroc"]
    for r in measured:
        figure = by_sex["performance"]["groups"][r["group"]]["metrics"]["auroc"]
        assert (r["ci_low"], r["ci_high"], r["estimate"]) == (figure["ci_low"], figure["ci_high"], False)


def test_override_rate_by_reason_per_subgroup(ward, charlie):
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
    # 5% against 0%: within the margin, no flag; the page's burden table has the figures
    assert [f for f in result["flags"] if f["kind"] == "override_rate" and f["subgroup"] == "Sex"] == []
    row = next(r for r in result["burden"] if (r["subgroup"], r["group"]) == ("Sex", "female"))
    assert row["alerts"] == len(women) and row["override_rate"] == pytest.approx(10 / len(women))
    assert row["override_rate_by_reason"] == {"already_aware": pytest.approx(10 / len(women))}
    assert row["acted_on_share"] == 0.0 and set(row["alerts_per_100"]) == {"high", "medium"}


def test_clinicians_dismissing_one_group_s_alerts_more_is_flagged(ward, charlie, settings):
    alerts = list(Alert.objects.filter(unit="CCU").select_related("patient").order_by("pk"))
    women = [a for a in alerts if a.patient.sex == "female"]
    men = [a for a in alerts if a.patient.sex == "male"]
    dismissed = women[:60] + men[:12]
    AlertAction.objects.bulk_create(
        AlertAction(alert=alert, user=charlie, role="admin", action="dismiss", reason="not_relevant",
                    shown_at=START, seconds_to_decision=30.0, idempotency_key=f"k{alert.pk}")
        for alert in dismissed
    )  # fmt: skip
    AlertAction.objects.bulk_create(
        AlertAction(alert=alert, user=charlie, role="admin", action="accept", reason="",
                    shown_at=START, seconds_to_decision=30.0, idempotency_key=f"a{alert.pk}")
        for alert in men[12:40]
    )  # fmt: skip

    result = subgroup_window(version=ward, start=START, end=END, where=Slice("unit", "CCU"), n_boot=10)

    (flag,) = [f for f in result["flags"] if f["kind"] == "override_rate" and f["subgroup"] == "Sex"]
    assert (flag["subgroup"], flag["highest"], flag["lowest"]) == ("Sex", "female", "male")
    assert flag["difference"] == pytest.approx(60 / len(women) - 12 / len(men))
    assert flag["message"].startswith("Sex: Clinicians dismiss 31% of the alerts in female (192 alerts)")
    rows = {(r["subgroup"], r["group"]): r for r in result["burden"]}
    assert rows[("Sex", "male")]["acted_on_share"] == pytest.approx(28 / len(men))
    overrides = [r for r in result["sorted"] if r["metric"] == "override_rate" and r["subgroup"] == "Sex"]
    assert {r["group"]: r["value"] for r in overrides} == {
        "female": pytest.approx(60 / len(women)),
        "male": pytest.approx(12 / len(men)),
    }
    settings.SUBGROUP_OVERRIDE_MARGIN = 0.30  # a wider margin: no flag
    wider = subgroup_window(version=ward, start=START, end=END, where=Slice("unit", "CCU"), n_boot=10)
    assert [f for f in wider["flags"] if f["kind"] == "override_rate" and f["subgroup"] == "Sex"] == []


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


def test_a_window_with_a_few_outcomes_keeps_its_estimates_flags_and_chart(ward):
    """A recent window of a 30-day outcome: 30 of its encounters have their outcome. Every group is
    too few to measure, so each is judged on its CBPE estimate; the alert-rate ratio needs no outcome
    and is flagged from every encounter; the table and the chart are not empty."""
    micu = Outcome.objects.filter(encounter__patient__unit="MICU").order_by("pk")
    keep = list(micu.values_list("pk", flat=True)[:30])
    Outcome.objects.exclude(pk__in=keep).delete()

    result = subgroup_window(version=ward, start=START, end=END, where=Slice("unit", "MICU"), n_boot=10)

    assert (result["encounters"], result["with_outcome"]) == (384, 30)
    age = next(r for r in result["subgroups"] if r["subgroup"]["label"] == "Age")
    assert age["performance"] is not None and age["performance"]["overall"]["too_few"] is True
    assert age["basis"] == {
        "overall": "estimate", "<18": "too few", "18-44": "estimate", "45-64": "estimate",
        "65-79": "estimate", "80+": "estimate",
    }  # fmt: skip
    assert [r["group"] for r in result["burden"] if r["subgroup"] == "Age"] == [
        "18-44",
        "45-64",
        "65-79",
        "80+",
    ]
    ratios = {
        f["tier"]: f for f in result["flags"] if f["kind"] == "alert_rate_ratio" and f["subgroup"] == "Age"
    }
    risk = np.array(Prediction.objects.filter(unit="MICU", patient__age=85).values_list("risk", flat=True))
    for tier, t in ward.thresholds.items():
        assert ratios[tier]["lowest"] == "80+"
        assert ratios[tier]["lowest_alerts_per_100"] == pytest.approx(100 * np.mean(risk >= t))
    estimated = [r for r in result["sorted"] if r["metric"] == "expected_event_rate"]
    old = next(r for r in estimated if (r["subgroup"], r["group"]) == ("Age", "80+"))
    assert old["estimate"] is True and old["value"] == pytest.approx(risk.mean())
    assert any(r["metric"] == "alerts_per_100_high" for r in result["sorted"])
    age_points = next(t for t in calibration_points(result) if t["subgroup"] == "Age")
    assert age_points["estimate"] is True and [p["group"] for p in age_points["points"]] == [
        "18-44", "45-64", "65-79", "80+"
    ]  # fmt: skip
    assert not any(f["kind"] == "calibration_in_large" for f in result["flags"])  # not measurable yet


def test_groups_with_enough_outcomes_are_measured_the_others_estimated(ward):
    Outcome.objects.filter(encounter__patient__unit="MICU", encounter__patient__sex="female").delete()

    result = subgroup_window(version=ward, start=START, end=END, where=Slice("unit", "MICU"), n_boot=10)

    by_sex = next(r for r in result["subgroups"] if r["subgroup"]["column"] == "sex")
    assert by_sex["basis"] == {"overall": "performance", "female": "estimate", "male": "performance"}
    rows = {(r["group"], r["metric"]): r for r in result["sorted"] if r["subgroup"] == "Sex"}
    male_auroc, female_auroc = rows[("male", "auroc")], rows[("female", "auroc")]
    assert (
        male_auroc["estimate"] is False and male_auroc["ci_low"] < male_auroc["value"] < male_auroc["ci_high"]
    )
    assert female_auroc["estimate"] is True and female_auroc["ci_low"] is None
    assert female_auroc["value"] == by_sex["estimate"]["groups"]["female"]["metrics"]["auroc"]["value"]
    points = {
        p["group"]: p for p in next(t for t in calibration_points(result) if t["subgroup"] == "Sex")["points"]
    }
    assert points["male"]["estimate"] is False and points["male"]["low"] is not None
    assert points["female"]["estimate"] is True


def test_a_race_code_and_its_text_land_in_one_group(ward):
    """FHIR ingest posts CDC Race & Ethnicity codes (2106-3), the demo and many scoring services text
    ("white"): both are one group, named by the OMB category; the stored value stays as posted."""
    Patient.objects.filter(unit="CCU", race="2106-3").update(race="white")
    Patient.objects.filter(unit="MICU", race="2054-5").update(race="Black")
    Patient.objects.filter(unit="CCU", race="2054-5").update(race="urn:oid:2.16.840.1.113883.6.238|2054-5")
    Patient.objects.filter(unit="MICU").update(ethnicity="2135-2")
    Patient.objects.filter(unit="CCU").update(ethnicity="hispanic")
    Patient.objects.filter(unit="RESP-ICU").update(ethnicity="UNK")

    result = subgroup_window(version=ward, start=START, end=END, where=Slice("overall"), n_boot=0)

    race = next(r for r in result["subgroups"] if r["subgroup"]["column"] == "race")
    assert race["group_order"] == ["Black or African American", "White"]
    assert {g: e["n"] for g, e in race["estimate"]["groups"].items()} == {
        "Black or African American": 768,
        "White": 768,
    }
    ethnicity = next(r for r in result["subgroups"] if r["subgroup"]["column"] == "ethnicity")
    assert {g: e["n"] for g, e in ethnicity["estimate"]["groups"].items()} == {
        "Hispanic or Latino": 768,
        "not recorded": 768,
    }
    assert Patient.objects.filter(race="white").count() == 192  # stored as posted


@pytest.mark.parametrize(
    ("posted", "column", "group"),
    [
        ("2106-3", "race", "White"),
        (" White ", "race", "White"),
        ("Caucasian", "race", "White"),
        ("1002-5", "race", "American Indian or Alaska Native"),
        ("2028-9", "race", "Asian"),
        ("african american", "race", "Black or African American"),
        ("2076-8", "race", "Native Hawaiian or Other Pacific Islander"),
        ("2106-3|2054-5", "race", "Two or more races"),
        ("ASKU", "race", None),
        ("Martian", "race", "Martian"),
        ("2135-2", "ethnicity", "Hispanic or Latino"),
        ("Latino", "ethnicity", "Hispanic or Latino"),
        ("2186-5", "ethnicity", "Not Hispanic or Latino"),
        ("non-hispanic", "ethnicity", "Not Hispanic or Latino"),
    ],
)
def test_omb_categories_of_posted_race_and_ethnicity(posted, column, group):
    assert group_value(posted, Subgroup(column, column.capitalize())) == group
    assert group_value(posted, Subgroup(column, column.capitalize()), "feature") == posted  # a model input


def test_an_encounter_scored_many_times_counts_once_with_its_newest_score(ward):
    """Each encounter is one row, its newest score's (PostgreSQL picks it with DISTINCT ON; SQLite
    reads every score): earlier and later-in-the-row-order scores of the same encounter are not
    counted again."""
    from monitoring.subgroups import window_encounters

    scores = Prediction.objects.filter(model_version=ward).select_related("patient")
    newest = {p.encounter_id: p for p in scores}
    rescored = list(newest.values())[:5]
    for n, p in enumerate(rescored):
        for hours, risk in ((-3, 0.91), (-2, 0.02)):  # two older scores, inserted after the newest
            Prediction.objects.create(
                registered_model=p.registered_model, model_version=ward, external_id=f"older/{n}/{hours}",
                patient=p.patient, encounter_id=p.encounter_id, unit=p.unit, bed="1",
                scored_at=p.scored_at + timedelta(hours=hours), risk=risk, margin=0.0,
                tier=ward.tier_for(risk), features={}, payload_sha256="0" * 64,
            )  # fmt: skip

    frame = window_encounters(ward, START, END, Slice.parse("overall"))

    assert len(frame) == len(newest)
    assert sorted(frame["risk"].round(12)) == sorted(round(p.risk, 12) for p in newest.values())
