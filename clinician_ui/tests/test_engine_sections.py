"""The alert page shows the explanation engine's results: the uncertainty interval and the
reference set's calibration note, or the model's abstention instead of a confident number; the
stability badge; similar reference patients; the what-if panel. Low tier stays a minimal cue."""

import json

import pytest
from django.urls import reverse

from explanations.models import Explanation
from tests.fixtures.factories import engine_results_set, prediction_create


def alert_html(client, prediction) -> str:
    response = client.get(reverse("alert-detail", args=[prediction.alert.pk]))
    assert response.status_code == 200
    return response.content.decode()


def test_high_alert_shows_interval_calibration_stability_and_similar_patients(alice_client, ui_model_version):
    prediction = prediction_create(model_version=ui_model_version, risk=0.71)
    engine_results_set(prediction)

    html = alert_html(alice_client, prediction)

    assert '<span class="risk-value">71%</span>' in html
    assert "calibrated range 64%–76%" in html
    assert (
        "Of the 143 reference-set patients the model scored between 70% and 80%, 68% (61%–74%, 95% "
        "confidence interval) had the outcome: death within 30 days of ICU admission." in html
    )
    assert "The reference set is the model's held-out, labelled patients." in html
    assert 'aria-hidden="true">●</span> Stable explanation · 93% agreement' in html
    assert "6 of 10 similar patients had the outcome" in html
    assert html.count("Had the outcome</span>") == 6
    assert html.count("Did not</span>") == 4
    assert 'Lactate <span class="muted">(<span aria-hidden="true">↑</span> raises risk)' in html
    assert "Model abstains" not in html


def test_unstable_explanation_says_so_with_shape_and_words(alice_client, ui_model_version):
    prediction = prediction_create(model_version=ui_model_version, risk=0.4)
    engine_results_set(prediction, unstable=True)

    html = alert_html(alice_client, prediction)

    assert 'aria-hidden="true">▲</span> Unstable explanation · 64% agreement' in html
    assert "below the 80% this badge needs" in html
    assert "Creatinine (9 of 20)" in html


def test_abstaining_model_shows_the_reason_not_a_confident_number(alice_client, ui_model_version):
    prediction = prediction_create(model_version=ui_model_version, risk=0.71)
    reason = "3 of the 5 most influential inputs are not measured (lactate, map, age)."
    engine_results_set(prediction, abstain=True, abstain_reason=reason)

    html = alert_html(alice_client, prediction)

    # The headline is the abstention; the number is marked unreliable, never the headline.
    assert '<span class="risk-value">71%</span>' not in html
    assert "Model abstains</span>" in html
    assert "Model output 71%: not reliable for this patient" in html
    assert "The model abstains for this patient." in html
    assert reason in html
    assert "<title>" in html and "model abstains · Sightline" in html
    # Abstention is its own state: the neutral badge the worklist uses, no tier badge or colour.
    head = html[html.index('<div class="risk-box') : html.index('class="model-line"')]
    assert '<div class="risk-box risk-abstains">' in head
    assert "tier-abstains" in head and "⊘</span> Abstains" in head
    assert "tier-high" not in head and "risk-high" not in head
    # The patient's scores: this score's row shows the same neutral badge, never "High".
    current = html[html.index('<tr class="history-current"') :]
    current = current[: current.index("</tr>")]
    assert "tier-abstains" in current and "tier-high" not in current and "not reliable" in current


def test_an_earlier_abstaining_score_shows_no_tier_in_the_patients_scores(alice_client, ui_model_version):
    from datetime import timedelta

    from django.utils import timezone

    from tests.fixtures.factories import patient_create

    patient = patient_create(unit="MICU")
    earlier = prediction_create(
        model_version=ui_model_version,
        patient=patient,
        risk=0.91,
        scored_at=timezone.now() - timedelta(hours=4),
    )
    engine_results_set(earlier, abstain=True, abstain_reason="Out of distribution.")
    current = prediction_create(model_version=ui_model_version, patient=patient, risk=0.71)
    engine_results_set(current)

    html = alert_html(alice_client, current)

    rows = html[html.index('<table class="table history-table">') :]
    rows = rows[: rows.index("</table>")].split("<tr")
    this_row = next(r for r in rows if "history-current" in r)
    earlier_row = next(r for r in rows if f"/predictions/{earlier.pk}/" in r)
    assert "tier-high" in this_row and "tier-abstains" not in this_row
    assert "91%" in earlier_row and "not reliable" in earlier_row
    assert "tier-abstains" in earlier_row and "tier-high" not in earlier_row


def test_pending_explanation_says_the_sections_are_being_computed(alice_client, ui_model_version):
    prediction = prediction_create(
        model_version=ui_model_version, risk=0.71, explanation=Explanation.Status.PENDING
    )

    html = alert_html(alice_client, prediction)

    assert "Uncertainty interval, calibration and stability are being computed." in html
    assert "Similar patients are being computed." in html
    assert "The what-if panel is available once the explanation is computed (being computed now)." in html
    assert 'id="whatif-form"' not in html
    assert "calibrated range" not in html


def test_what_if_offers_mutable_inputs_within_their_range_and_lists_the_rest(alice_client, ui_model_version):
    prediction = prediction_create(model_version=ui_model_version, risk=0.71)
    engine_results_set(prediction)

    html = alert_html(alice_client, prediction)

    url = reverse("prediction-what-if", args=[prediction.pk])
    assert f'data-url="{url}"' in html
    assert (
        '<input type="number" step="any" id="wi-lactate" name="lactate" data-kind="numeric" value="4.2" '
        'data-original="4.2" min="0.1" max="30"' in html
    )
    assert "plausible 0.1–30 mmol/L" in html
    # Not measured: an empty input, said so, never a made-up value.
    assert 'id="wi-urine_output" name="urine_output" data-kind="numeric" value=""' in html
    assert "plausible 0–10000 mL; now not measured" in html
    assert '<select id="wi-ventilated" name="ventilated" data-kind="binary" data-original="true"' in html
    # Age is immutable: shown, not offered.
    assert 'id="wi-age"' not in html
    assert "Not changeable in a what-if:</strong>" in html and "Age: 67 years" in html
    assert "js/what_if.js" in html


def test_what_if_shows_a_binary_input_as_yes_or_no_and_sends_true_or_false(alice_client, ui_model_version):
    """Ventilation is stored as 1 (the scoring service's 0/1): the select shows yes/no, its values
    are what the what-if API takes (true/false), and the result table reads the input kinds from
    the page (what_if.js shows a binary value as yes/no, never 1/0)."""
    prediction = prediction_create(model_version=ui_model_version, risk=0.71)
    engine_results_set(prediction)
    assert prediction.features["ventilated"]["value"] == 1

    html = alert_html(alice_client, prediction)

    select = html[
        html.index('<select id="wi-ventilated"') : html.index("</select>", html.index('id="wi-ventilated"'))
    ]
    assert '<option value="true" selected>yes</option>' in select
    assert '<option value="false">no</option>' in select
    assert ">1<" not in select and ">0<" not in select
    kinds = json.loads(
        html.split('<script id="whatif-kinds" type="application/json">')[1].split("</script>")[0]
    )
    assert kinds["ventilated"] == "binary"
    assert kinds["lactate"] == "numeric"
    # Documented but known only after the decision point: not an input, so not listed.
    assert "discharge_disposition" not in kinds


def test_low_tier_cue_has_none_of_the_engine_sections_until_asked(alice_client, ui_model_version):
    prediction = prediction_create(model_version=ui_model_version, risk=0.08)
    engine_results_set(prediction)
    url = reverse("prediction-detail", args=[prediction.pk])

    cue = alice_client.get(url).content.decode()
    for section in ('id="uncertainty"', 'id="similar-patients"', 'id="what-if"', "calibrated range"):
        assert section not in cue
    full = alice_client.get(url, {"full": "1"}).content.decode()
    assert 'id="similar-patients"' in full and 'id="whatif-form"' in full


@pytest.mark.django_db
def test_real_engine_results_reach_the_alert_page(
    service_client, prediction_payload, model_version, charlie_client, django_capture_on_commit_callbacks
):
    """Ingested and explained by the real engine (eager tasks): the page shows what it stored."""
    with django_capture_on_commit_callbacks(execute=True):
        response = service_client.post("/api/v1/predictions/", prediction_payload(9), format="json")
    body = response.json()
    assert body["tier"] == "high" and body["alert"]
    explanation = Explanation.objects.get(prediction_id=body["id"])
    assert explanation.status == Explanation.Status.READY and explanation.abstain is False

    html = charlie_client.get(body["alert"]["url"]).content.decode()

    interval = explanation.uncertainty["interval"]
    assert f"calibrated range {100 * interval['low']:.0f}%–{100 * interval['high']:.0f}%" in html
    assert explanation.similar_patients["summary"] in html
    assert f"{round(100 * explanation.stability['agreement'])}% agreement" in html
    assert "real (de-identified) patients of the RHC study" in html
    # Mean arterial pressure is mutable and numeric in the demo schema; age and the APACHE score
    # (a composite of other values) are not, and the page says why.
    assert 'id="wi-map"' in html and 'min="0" max="300"' in html
    assert 'id="wi-age"' not in html and 'id="wi-apache_aps"' not in html
    assert "a composite score of the day&#x27;s worst physiology" in html
