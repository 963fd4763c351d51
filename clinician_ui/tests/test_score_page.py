"""The score and alert pages: risk and tier, explanation states, the feature table, the waterfall's
JSON, the low-tier cue and the simulated-data banner."""

import math
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from engine.probability import probability_points
from explanations.models import Explanation
from patients.models import AuditEvent
from tests.fixtures.factories import BASE_VALUE, prediction_create


def alert_page(client, prediction) -> str:
    response = client.get(reverse("alert-detail", args=[prediction.alert.pk]))
    assert response.status_code == 200
    return response.content.decode()


def test_high_alert_shows_risk_tier_model_waterfall_and_table(alice_client, ui_model_version):
    prediction = prediction_create(model_version=ui_model_version, risk=0.71)
    html = alert_page(alice_client, prediction)
    assert '<span class="risk-value">71%</span>' in html
    assert "▲</span> High" in html
    assert "icu-mortality-30d v1" in html
    # SHAP's background is explained in "About this explanation", not in the model line.
    model_line = html[html.index('<p class="model-line">') :]
    assert "background" not in model_line[: model_line.index("</p>")]
    about = html[html.index('id="about-explanation"') :]
    assert "200 background patients" in about[: about.index("</section>")]
    assert 'id="waterfall"' in html
    assert f'data-url="{reverse("explanation-json", args=[prediction.pk])}"' in html
    assert "vendor/plotly/plotly.min.js" in html
    assert "log-odds" in html
    # The table: value with unit, observed time with its age at score time.
    assert '4.2 <span class="unit">mmol/L</span>' in html
    assert "45 min before score" in html
    assert "3 h 10 min before score" in html
    # Outside data is never marked safe.
    assert "<script>alert" not in html


def test_missing_value_is_not_measured_never_a_number(alice_client, ui_model_version):
    prediction = prediction_create(model_version=ui_model_version, risk=0.71)
    html = alert_page(alice_client, prediction)
    row = html.split("Urine output (24 h)</th>", 1)[1].split("</tr>", 1)[0]
    assert "<em>not measured</em>" in row
    assert "mL" not in row


def test_source_link_opens_safely_and_only_for_web_urls(alice_client, ui_model_version):
    prediction = prediction_create(model_version=ui_model_version, risk=0.71)
    html = alert_page(alice_client, prediction)
    assert (
        '<a href="https://ehr.example.org/Observation/lab-998" target="_blank" rel="noopener noreferrer">'
        "Observation/lab-998" in html
    )
    # creatinine's url is javascript:..., shown as plain text, never as a link.
    assert "javascript:" not in html
    assert "Observation/lab-991" in html


def test_leakage_feature_is_not_shown_as_an_input(alice_client, ui_model_version):
    prediction = prediction_create(model_version=ui_model_version, risk=0.71)
    assert "Discharge disposition" not in alert_page(alice_client, prediction)


def test_outside_text_is_escaped(alice_client, ui_model_version):
    prediction = prediction_create(model_version=ui_model_version, risk=0.71)
    patient = prediction.patient
    patient.display_name = "<script>alert('x')</script>"
    patient.save()
    html = alert_page(alice_client, prediction)
    assert "<script>alert('x')</script>" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (Explanation.Status.PENDING, "Explanation being computed"),
        (Explanation.Status.RUNNING, "Explanation being computed"),
        (Explanation.Status.FAILED, "could not be computed"),
    ],
)
def test_explanation_not_ready_shows_status_and_no_numbers(alice_client, ui_model_version, status, message):
    prediction = prediction_create(model_version=ui_model_version, risk=0.71, explanation=status)
    html = alert_page(alice_client, prediction)
    assert message in html
    assert 'id="waterfall"' not in html
    assert "Contribution" not in html
    body = alice_client.get(reverse("explanation-json", args=[prediction.pk])).json()
    assert body == {
        "prediction": prediction.pk,
        "status": status,
        "model": {"name": "icu-mortality-30d", "version": 1},
    }


def test_explanation_json_is_what_the_waterfall_needs(alice_client, ui_model_version):
    prediction = prediction_create(model_version=ui_model_version, risk=0.71)
    body = alice_client.get(reverse("explanation-json", args=[prediction.pk])).json()
    assert body["status"] == "ready"
    assert body["units"] == "log-odds"
    assert body["base_value"] == BASE_VALUE
    assert body["background_size"] == 200
    assert body["risk"] == 0.71
    steps = body["contributions"]
    # Largest first; all six inputs (the leakage feature is not one).
    assert [s["name"] for s in steps] == ["lactate", "map", "ventilated", "creatinine", "age", "urine_output"]
    assert steps[0]["label"] == "Lactate"
    assert steps[0]["value"] == "4.2 mmol/L"
    assert steps[-1]["value"] == "not measured"
    # The bars add up to the model output (the margin), which is the risk in log-odds.
    assert body["output"] == pytest.approx(math.log(0.71 / 0.29), abs=1e-9)
    assert BASE_VALUE + sum(s["shap"] for s in steps) == pytest.approx(prediction.margin, abs=1e-9)
    # Approximate points are engine.treeshap's, and add up to risk - sigmoid(base).
    expected = probability_points(BASE_VALUE, [c["shap"] for c in prediction.explanation.contributions])
    assert steps[0]["probability_points"] == pytest.approx(expected[1])
    assert sum(s["probability_points"] for s in steps) == pytest.approx(0.71 - body["base_probability"])


def test_low_tier_shows_only_the_cue_until_full_is_asked(alice, alice_client, ui_model_version):
    prediction = prediction_create(model_version=ui_model_version, risk=0.08)
    url = reverse("prediction-detail", args=[prediction.pk])
    html = alice_client.get(url).content.decode()
    assert "Low-tier score" in html
    assert "○</span> Low" in html
    assert "8%" in html
    # The single largest factor with its direction: lactate, and at low risk it lowers it.
    assert "Largest factor: <strong>Lactate</strong>" in html
    assert "lowers risk" in html
    assert "Show full explanation" in html
    assert 'id="waterfall"' not in html
    assert "feature-table" not in html
    assert not AuditEvent.objects.filter(action="expand_low_tier").exists()

    full = alice_client.get(url, {"full": "1"}).content.decode()
    assert 'id="waterfall"' in full
    assert "feature-table" in full
    event = AuditEvent.objects.get(action="expand_low_tier")
    assert (event.user, event.prediction, event.path) == (alice, prediction, url + "?full=1")


def test_simulated_data_is_labelled(alice_client, ui_model_version):
    prediction = prediction_create(model_version=ui_model_version, risk=0.71, simulated=True)
    html = alert_page(alice_client, prediction)
    # The bundle says nothing of what its simulated scores are made of: the page says only what it knows.
    assert (
        "Simulated data:</strong> this score was posted as simulated; it is not a real patient's score."
        in html
    )
    # A bundle that says (the demo's simulation_note) is quoted.
    ui_model_version.spec = {
        **ui_model_version.spec,
        "simulation_note": "names are simulated; values are real.",
    }
    ui_model_version.save(update_fields=["spec"])
    html = alert_page(alice_client, prediction)
    assert "Simulated data:</strong> names are simulated; values are real." in html
    assert 'Observed <span class="tag">simulated</span>' in html
    assert 'Source <span class="tag">simulated</span>' in html


def test_real_data_has_no_simulated_banner(alice_client, ui_model_version):
    prediction = prediction_create(model_version=ui_model_version, risk=0.71)
    assert "Simulated data:" not in alert_page(alice_client, prediction)


def test_alert_page_lists_previous_actions_and_offers_the_form(alice, alice_client, ui_model_version):
    from clinician_ui.services import alert_action_record

    prediction = prediction_create(model_version=ui_model_version, risk=0.71)
    alert_action_record(
        alert=prediction.alert, user=alice, action="escalate", reason="senior_review", comment="Reg."
    )
    html = alert_page(alice_client, prediction)
    assert "Senior clinician review requested" in html
    assert 'id="action-form"' in html
    assert 'data-idempotency-key="' in html
    assert 'value="already_aware"' in html
    # A new key per page load.
    keys = {
        alert_page(alice_client, prediction).split('data-idempotency-key="')[1].split('"')[0]
        for _ in range(2)
    }
    assert len(keys) == 2


def test_auditor_sees_the_page_but_no_action_form(auditor_client, ui_model_version):
    prediction = prediction_create(
        model_version=ui_model_version, risk=0.71, scored_at=timezone.now() - timedelta(1)
    )
    html = alert_page(auditor_client, prediction)
    assert 'id="action-form"' not in html
    assert "read access" in html


def test_ready_without_numbers_is_shown_as_failed(alice_client, ui_model_version):
    prediction = prediction_create(model_version=ui_model_version, risk=0.71)
    Explanation.objects.filter(prediction=prediction).update(contributions=None)
    html = alert_page(alice_client, prediction)
    assert "could not be computed" in html
    assert 'id="waterfall"' not in html
    body = alice_client.get(reverse("explanation-json", args=[prediction.pk])).json()
    assert body["status"] == "failed"
    assert "contributions" not in body


def test_low_tier_cue_while_explanation_pending(alice_client, ui_model_version):
    prediction = prediction_create(
        model_version=ui_model_version, risk=0.1, explanation=Explanation.Status.PENDING
    )
    html = alice_client.get(reverse("prediction-detail", args=[prediction.pk])).content.decode()
    assert "Explanation being computed" in html
    assert "Largest factor" not in html


def test_the_page_shows_the_points_the_worker_stored_and_recomputes_nothing(alice_client, ui_model_version):
    """Probability points are computed once, by the worker, and stored; the page reads them (the
    explanation API returns the same stored figures), so the two can never disagree."""
    prediction = prediction_create(model_version=ui_model_version, risk=0.71)
    explanation = prediction.explanation
    stored = [dict(c, points=round(0.01 * (i + 1), 4)) for i, c in enumerate(explanation.contributions)]
    Explanation.objects.filter(pk=explanation.pk).update(contributions=stored)

    body = alice_client.get(reverse("explanation-json", args=[prediction.pk])).json()
    api = alice_client.get(f"/api/v1/predictions/{prediction.pk}/explanation/").json()

    shown = {s["name"]: s["probability_points"] for s in body["contributions"]}
    assert shown == {c["name"]: c["points"] for c in stored}
    assert {f["name"]: f["points"] for f in api["features"] if f["points"] is not None} == shown
