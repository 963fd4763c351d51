"""The worklist's risk trend, change since the previous score, state filter, and the JSON view its
background refresh polls (same selector, same filters, same access)."""

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from explanations.models import Explanation
from patients.models import Alert, Prediction
from tests.fixtures.factories import engine_results_set, patient_create, prediction_create


def scored(hours_ago: float):
    return timezone.now() - timedelta(hours=hours_ago)


@pytest.fixture
def history_patient(ui_model_version):
    """A MICU patient scored ten times, hourly: 10%, 15%, ... 49% (medium), then 61% (high) now."""
    patient = patient_create(unit="MICU", display_name="Trend, Tess")
    risks = [0.10, 0.15, 0.20, 0.25, 0.30, 0.35, 0.40, 0.45, 0.49, 0.61]
    tiers_expected = ["low"] * 3 + ["medium"] * 6 + ["high"]
    predictions = [
        prediction_create(model_version=ui_model_version, patient=patient, risk=r, scored_at=scored(10 - i))
        for i, r in enumerate(risks)
    ]
    assert [p.tier for p in predictions] == tiers_expected
    return patient, predictions


def test_sparkline_shows_the_last_eight_scores_with_a_text_alternative(alice_client, history_patient):
    patient, predictions = history_patient
    response = alice_client.get(reverse("worklist"))
    (alert,) = response.context["worklist"].alerts
    assert alert.prediction_id == predictions[-1].pk
    assert [p.prediction_id for p in alert.trend.points] == [p.pk for p in predictions[-8:]]
    html = response.content.decode()
    label = "Risk trend, last 8 scores, oldest first: 20%, 25%, 30%, 35%, 40%, 45%, 49%, 61%"
    assert f'<svg class="sparkline" role="img" aria-label="{label}"' in html
    assert f"<title>{label}</title>" in html
    polyline = re.search(r'<polyline points="([^"]+)"', html).group(1)
    assert len(polyline.split()) == 8
    # Fixed 0-100% axis, 26 px high with 3 px padding: 61% sits at y = 3 + 0.39 * 20.
    assert polyline.split()[-1].endswith(",10.8")


def test_change_since_previous_score_in_points_and_tier(alice_client, history_patient):
    html = alice_client.get(reverse("worklist")).content.decode()
    # 49% (medium) -> 61% (high).
    assert (
        '<span class="change change-up"><span aria-hidden="true">▲</span>'
        '<span class="visually-hidden">risk up</span> +12 pts, was medium</span>'
    ) in html


def test_change_down_within_the_same_tier_and_first_score(alice_client, ui_model_version):
    patient = patient_create(unit="MICU")
    prediction_create(model_version=ui_model_version, patient=patient, risk=0.90, scored_at=scored(1))
    prediction_create(model_version=ui_model_version, patient=patient, risk=0.82)
    prediction_create(model_version=ui_model_version, risk=0.60)  # another patient, first score
    html = alice_client.get(reverse("worklist")).content.decode()
    assert "risk down</span> −8 pts</span>" in html
    assert '<span class="change change-first">first score</span>' in html


def test_change_since_previous_score_is_the_difference_of_the_shown_risks(alice_client, ui_model_version):
    """0.904 -> 0.646 prints as 90% -> 65%: the change reads -25, not the -26 of the unrounded risks."""
    patient = patient_create(unit="MICU")
    prediction_create(model_version=ui_model_version, patient=patient, risk=0.904, scored_at=scored(1))
    prediction_create(model_version=ui_model_version, patient=patient, risk=0.646)
    response = alice_client.get(reverse("worklist"))
    (alert,) = response.context["worklist"].alerts
    assert alert.trend.delta_points == -25
    html = response.content.decode()
    row = html[html.index(f'data-key="alert-{alert.pk}"') :].split("</tr>")[0]
    assert "oldest first: 90%, 65%" in row
    assert "risk down</span> −25 pts</span>" in row
    assert round((0.646 - 0.904) * 100) == -26  # what the unrounded difference would have shown


def test_history_holds_only_scores_from_the_users_units(alice_client, bob_client, ui_model_version):
    """A patient moved from CCU to MICU: Alice (MICU) sees only the MICU score in the trend."""
    patient = patient_create(unit="CCU")
    ccu = prediction_create(model_version=ui_model_version, patient=patient, risk=0.3, scored_at=scored(2))
    patient.unit = "MICU"
    patient.save()
    micu = prediction_create(model_version=ui_model_version, patient=patient, risk=0.7)
    assert (ccu.unit, micu.unit) == ("CCU", "MICU")
    (alert,) = alice_client.get(reverse("worklist")).context["worklist"].alerts
    assert [p.prediction_id for p in alert.trend.points] == [micu.pk]
    assert alert.trend.delta_points is None
    # Bob (CCU) no longer lists the patient: their latest score is in MICU.
    assert bob_client.get(reverse("worklist")).context["worklist"].alerts == []


def test_filter_by_state(alice_client, ui_model_version):
    new = prediction_create(model_version=ui_model_version, risk=0.8).alert
    seen = prediction_create(model_version=ui_model_version, risk=0.7).alert
    Alert.objects.filter(pk=seen.pk).update(state=Alert.State.ACKNOWLEDGED)
    prediction_create(model_version=ui_model_version, risk=0.05)

    response = alice_client.get(reverse("worklist"), {"state": "acknowledged"})
    assert [a.pk for a in response.context["worklist"].alerts] == [seen.pk]
    # Low-tier patients have no alert state: a state filter lists alerts only.
    assert response.context["worklist"].low == []
    assert 'id="low-list"' not in response.content.decode()
    assert '<option value="acknowledged" selected>' in response.content.decode()

    body = alice_client.get(reverse("worklist-json"), {"state": "new"}).json()
    assert [row["alert"] for row in body["alerts"]] == [new.pk]
    assert body["filters"] == {"unit": None, "tier": None, "state": "new"}
    assert body["shows_low"] is False
    # An unknown state is ignored, not an error.
    assert len(alice_client.get(reverse("worklist-json"), {"state": "bogus"}).json()["alerts"]) == 2


def test_json_rows_match_the_page_and_carry_escaped_html(alice_client, history_patient, ui_model_version):
    patient, predictions = history_patient
    low = prediction_create(model_version=ui_model_version, risk=0.04)
    evil = prediction_create(model_version=ui_model_version, risk=0.6)
    evil.patient.display_name = '<img src=x onerror="window.__xss=1">'
    evil.patient.save()

    page = alice_client.get(reverse("worklist")).content.decode()
    body = alice_client.get(reverse("worklist-json")).json()
    assert [row["key"] for row in body["alerts"]] == [
        f"alert-{predictions[-1].alert.pk}",
        f"alert-{evil.alert.pk}",
    ]
    assert [row["key"] for row in body["low"]] == [f"prediction-{low.pk}"]
    first = body["alerts"][0]
    assert first["patient"] == {"id": patient.external_id, "display_name": "Trend, Tess"}
    assert (first["tier"], first["risk"], first["state"], first["unit"]) == ("high", 0.61, "new", "MICU")
    assert first["url"] == reverse("alert-detail", args=[predictions[-1].alert.pk])
    assert first["trend"]["delta_points"] == 12
    assert first["trend"]["previous_tier"] == "medium"
    assert [p["risk"] for p in first["trend"]["points"]] == [0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.49, 0.61]
    # The page renders the very same row html and signature the poll returns.
    for row in body["alerts"] + body["low"]:
        assert f'data-key="{row["key"]}" data-sig="{row["sig"]}">{row["html"]}<' in page
    # Outside text arrives escaped inside the html the page inserts.
    evil_row = body["alerts"][1]
    assert "<img" not in evil_row["html"]
    assert "&lt;img src=x onerror=&quot;window.__xss=1&quot;&gt;" in evil_row["html"]
    assert evil_row["patient"]["display_name"] == '<img src=x onerror="window.__xss=1">'


def test_json_signature_changes_only_when_the_row_does(alice_client, ui_model_version):
    alert = prediction_create(model_version=ui_model_version, risk=0.8).alert
    first = alice_client.get(reverse("worklist-json")).json()["alerts"][0]["sig"]
    assert alice_client.get(reverse("worklist-json")).json()["alerts"][0]["sig"] == first
    Alert.objects.filter(pk=alert.pk).update(state=Alert.State.ACKNOWLEDGED)
    row = alice_client.get(reverse("worklist-json")).json()["alerts"][0]
    assert row["sig"] != first
    assert "Acknowledged" in row["html"]


def test_json_respects_units_and_login(client, bob_client, alice_client, ui_model_version):
    prediction_create(model_version=ui_model_version, unit="MICU", risk=0.8)
    assert bob_client.get(reverse("worklist-json")).json()["alerts"] == []
    assert bob_client.get(reverse("worklist-json"), {"unit": "MICU"}).json()["filters"]["unit"] is None
    assert len(alice_client.get(reverse("worklist-json")).json()["alerts"]) == 1
    response = client.get(reverse("worklist-json"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_poll_interval_comes_from_settings(alice_client, settings):
    settings.WORKLIST_POLL_SECONDS = 7
    html = alice_client.get(reverse("worklist")).content.decode()
    assert 'data-poll-seconds="7"' in html
    assert f'data-url="{reverse("worklist-json")}"' in html
    assert 'aria-live="polite"' in html
    assert alice_client.get(reverse("worklist-json")).json()["poll_seconds"] == 7


def _row(html: str, key: str) -> str:
    """The html of one worklist row (alert <tr> or low-tier <li>) by its data-key."""
    start = html.index(f'data-key="{key}"')
    return html[start : html.index("</tr>" if key.startswith("alert-") else "</li>", start)]


def test_abstaining_model_is_marked_in_words_not_shown_as_a_confident_risk(alice_client, ui_model_version):
    """As on the alert page: the row says the model abstains, and its output is marked unreliable."""
    reason = "3 of the 5 most influential inputs are not measured (lactate, map, age)."
    abstains = prediction_create(model_version=ui_model_version, risk=0.71)
    engine_results_set(abstains, abstain=True, abstain_reason=reason)
    confident = prediction_create(model_version=ui_model_version, risk=0.64)
    engine_results_set(confident)
    low = prediction_create(model_version=ui_model_version, risk=0.08)
    engine_results_set(low, abstain=True, abstain_reason=reason)

    html = alice_client.get(reverse("worklist")).content.decode()

    row = _row(html, f"alert-{abstains.alert.pk}")
    assert '<span class="abstain-mark"><span aria-hidden="true">⊘</span> Model abstains</span>' in row
    assert "output 71%, not reliable" in row
    assert '<td class="num">71%</td>' not in row
    # Its own state: a neutral badge and row, not the high tier's colour.
    assert "tier-abstains" in row and "tier-high" not in row and "tier-medium" not in row
    start = html.rindex("<tr", 0, html.index(f'data-key="alert-{abstains.alert.pk}"'))
    assert 'class="row-abstains"' in html[start : html.index(">", start)]
    other = _row(html, f"alert-{confident.alert.pk}")
    assert '<td class="num">64%</td>' in other
    assert "Model abstains" not in other and "tier-abstains" not in other
    item = _row(html, f"prediction-{low.pk}")
    assert 'Model abstains</span> <span class="abstain-output">(output 8%, not reliable)</span>' in item
    # The alert page says the same for the same score.
    page = alice_client.get(reverse("alert-detail", args=[abstains.alert.pk])).content.decode()
    assert "Model output 71%: not reliable for this patient" in page


def test_abstention_counts_only_once_the_explanation_is_ready(alice_client, ui_model_version):
    """Being recomputed (running): neither the alert page nor the worklist claims an abstention."""
    prediction = prediction_create(model_version=ui_model_version, risk=0.71)
    engine_results_set(prediction, abstain=True, abstain_reason="Out of distribution.")
    Explanation.objects.filter(prediction=prediction).update(status=Explanation.Status.RUNNING)

    html = alice_client.get(reverse("worklist")).content.decode()
    row = _row(html, f"alert-{prediction.alert.pk}")
    assert "Model abstains" not in row
    assert '<td class="num">71%</td>' in row
    page = alice_client.get(reverse("alert-detail", args=[prediction.alert.pk])).content.decode()
    assert "Model abstains" not in page


def test_cached_row_changes_at_once_when_the_model_starts_to_abstain(alice_client, ui_model_version):
    """Rows are cached by what they show: a row that changes is a new key, on the next poll."""
    prediction = prediction_create(model_version=ui_model_version, risk=0.71)
    engine_results_set(prediction)
    first = alice_client.get(reverse("worklist-json")).json()["alerts"][0]
    assert first["abstains"] is False
    assert "Model abstains" not in first["html"]
    assert alice_client.get(reverse("worklist-json")).json()["alerts"][0] == first

    Explanation.objects.filter(prediction=prediction).update(abstain=True, abstain_reason="Unusual patient.")

    row = alice_client.get(reverse("worklist-json")).json()["alerts"][0]
    assert row["abstains"] is True
    assert row["sig"] != first["sig"]
    assert "Model abstains" in row["html"]
    page = alice_client.get(reverse("worklist")).content.decode()
    assert f'data-key="{row["key"]}" data-sig="{row["sig"]}">{row["html"]}<' in page


def test_cached_rows_never_cross_units(alice_client, bob_client, ui_model_version):
    """The cache holds rendered rows, never lists: each user's rows come from their own units'
    query, so a row Alice's page rendered (and cached) is not in Bob's, and the reverse."""
    micu = prediction_create(model_version=ui_model_version, unit="MICU", risk=0.8)
    ccu = prediction_create(model_version=ui_model_version, unit="CCU", risk=0.7)
    for client, own, other in ((alice_client, micu, ccu), (bob_client, ccu, micu)) * 2:  # 2nd round: cached
        body = client.get(reverse("worklist-json")).json()
        assert [row["key"] for row in body["alerts"]] == [f"alert-{own.alert.pk}"]
        page = client.get(reverse("worklist")).content.decode()
        assert own.patient.display_name in page
        assert other.patient.display_name not in page
        assert f"alert-{other.alert.pk}" not in page


def test_the_trend_is_in_score_time_order_and_holds_only_the_users_units(alice, charlie, ui_model_version):
    """Scores can arrive late (a later id with an earlier scored_at): the sparkline is in the order
    they were scored. A score made while the patient was in another unit is not in a clinician's
    trend (alice: MICU only), and is in an admin's."""
    from clinician_ui.history import trends_for_patients

    patient = patient_create(unit="MICU")
    one = dict(model_version=ui_model_version, patient=patient)
    latest = prediction_create(**one, risk=0.30, scored_at=scored(1))
    earliest = prediction_create(**one, risk=0.10, scored_at=scored(3))
    elsewhere = prediction_create(**one, risk=0.50, scored_at=scored(2.5))
    Prediction.objects.filter(pk=elsewhere.pk).update(unit="CCU")  # scored while the patient was in CCU
    middle = prediction_create(**one, risk=0.20, scored_at=scored(2))

    mine = trends_for_patients(user=alice, patient_ids=[patient.pk])[patient.pk]
    everyone = trends_for_patients(user=charlie, patient_ids=[patient.pk])[patient.pk]

    assert [p.prediction_id for p in mine.points] == [earliest.pk, middle.pk, latest.pk]
    assert [p.risk for p in mine.points] == [0.10, 0.20, 0.30]
    assert [p.prediction_id for p in everyone.points] == [earliest.pk, elsewhere.pk, middle.pk, latest.pk]
    assert mine.delta_points == 10
