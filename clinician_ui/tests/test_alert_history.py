"""The alert page's history: a trend mark per feature against its most recent earlier value, the
patient's earlier scores, the model card link, and a constant number of queries."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from patients.models import CurrentScore, Prediction
from tests.fixtures.factories import feature_payload, patient_create, prediction_create


def scored(hours_ago: float):
    return timezone.now() - timedelta(hours=hours_ago)


def feature_cell(html: str, label: str) -> str:
    """The Value cell of a feature's row in the inputs table."""
    row = html.split(f'<th scope="row">{label}</th>', 1)[1].split("</tr>", 1)[0]
    return row.split("<td>", 2)[1]


@pytest.fixture
def two_scores(ui_model_version):
    """A MICU patient scored 6 h ago (lactate 3.1, MAP 58, creatinine not measured) and now
    (lactate 4.2, MAP 58, creatinine 2.1)."""
    patient = patient_create(unit="MICU")
    earlier_at = scored(6)
    earlier = prediction_create(
        model_version=ui_model_version,
        patient=patient,
        risk=0.40,
        scored_at=earlier_at,
        features=feature_payload(
            earlier_at,
            lactate={
                "value": 3.1,
                "unit": "mmol/L",
                "observed_at": (earlier_at - timedelta(minutes=30)).isoformat(),
            },
            creatinine={"value": None},
        ),
    )
    current = prediction_create(model_version=ui_model_version, patient=patient, risk=0.71)
    return earlier, current


def test_feature_rows_carry_a_trend_mark_against_the_previous_value(alice_client, two_scores):
    earlier, current = two_scores
    html = alice_client.get(reverse("alert-detail", args=[current.alert.pk])).content.decode()
    observed = (earlier.scored_at - timedelta(minutes=30)).strftime("%Y-%m-%d %H:%M")
    lactate = feature_cell(html, "Lactate")
    assert (
        f'<span class="trend trend-up" role="img" aria-label="up from 3.1 mmol/L ({observed} UTC)" '
        f'title="Up from 3.1 mmol/L ({observed} UTC)"><span class="trend-mark">↑</span> '
        '<span class="trend-prev">was 3.1 mmol/L</span></span>'
    ) in lactate
    # MAP unchanged: →, with the earlier observation's time.
    map_cell = feature_cell(html, "Mean arterial pressure")
    assert 'class="trend trend-same"' in map_cell
    assert "unchanged from 58 mmHg" in map_cell
    # Creatinine was not measured before: no earlier value, no mark.
    assert "trend" not in feature_cell(html, "Creatinine")
    # Urine output is not measured now: shown as such, with no mark.
    urine = feature_cell(html, "Urine output (24 h)")
    assert "<em>not measured</em>" in urine
    assert "trend" not in urine


def test_trend_looks_back_past_scores_where_the_value_was_missing(alice_client, ui_model_version):
    patient = patient_create(unit="MICU")
    first = scored(8)
    prediction_create(
        model_version=ui_model_version,
        patient=patient,
        risk=0.3,
        scored_at=first,
        features=feature_payload(first, creatinine={"value": 2.9, "unit": "mg/dL", "observed_at": None}),
    )
    middle = scored(4)
    prediction_create(
        model_version=ui_model_version,
        patient=patient,
        risk=0.35,
        scored_at=middle,
        features=feature_payload(middle, creatinine={"value": None}),
    )
    current = prediction_create(model_version=ui_model_version, patient=patient, risk=0.71)
    html = alice_client.get(reverse("alert-detail", args=[current.alert.pk])).content.decode()
    cell = feature_cell(html, "Creatinine")
    # 2.1 now, 2.9 two scores ago; no observed_at, so the earlier score's time is given.
    assert 'class="trend trend-down"' in cell
    assert f"down from 2.9 mg/dL ({first.strftime('%Y-%m-%d %H:%M')} UTC)" in cell


def test_first_score_has_no_trend_marks_and_says_so(alice_client, ui_model_version):
    current = prediction_create(model_version=ui_model_version, risk=0.71)
    html = alice_client.get(reverse("alert-detail", args=[current.alert.pk])).content.decode()
    assert 'class="trend ' not in html
    assert "No earlier score of this patient in your units." in html


def test_earlier_scores_are_listed_newest_first_with_links(alice_client, ui_model_version):
    patient = patient_create(unit="MICU")
    olds = [
        prediction_create(model_version=ui_model_version, patient=patient, risk=r, scored_at=scored(h))
        for r, h in ((0.12, 9), (0.30, 6), (0.55, 3))
    ]
    current = prediction_create(model_version=ui_model_version, patient=patient, risk=0.71)
    later = prediction_create(model_version=ui_model_version, patient=patient, risk=0.2, scored_at=scored(-1))
    response = alice_client.get(reverse("alert-detail", args=[current.alert.pk]))
    assert [p.pk for p in response.context["detail"].earlier] == [olds[2].pk, olds[1].pk, olds[0].pk]
    html = response.content.decode()
    section = html.split('id="history-title"', 1)[1].split("</section>", 1)[0]
    assert '<span class="tag tag-plain">this score</span>' in section
    links = [reverse("prediction-detail", args=[p.pk]) for p in reversed(olds)]
    positions = [section.index(f'href="{link}"') for link in links]
    assert positions == sorted(positions)
    assert "55%" in section and "30%" in section and "12%" in section
    assert "○</span> Low" in section
    # A later score is not an earlier one.
    assert reverse("prediction-detail", args=[later.pk]) not in section


def test_earlier_scores_from_another_unit_are_not_shown(alice_client, ui_model_version):
    patient = patient_create(unit="CCU")
    ccu = prediction_create(model_version=ui_model_version, patient=patient, risk=0.3, scored_at=scored(3))
    patient.unit = "MICU"
    patient.save()
    current = prediction_create(model_version=ui_model_version, patient=patient, risk=0.71)
    html = alice_client.get(reverse("alert-detail", args=[current.alert.pk])).content.decode()
    assert reverse("prediction-detail", args=[ccu.pk]) not in html
    assert 'class="trend ' not in html


def test_model_card_link(alice_client, ui_model_version):
    current = prediction_create(model_version=ui_model_version, risk=0.71)
    html = alice_client.get(reverse("alert-detail", args=[current.alert.pk])).content.decode()
    assert '<a href="/models/icu-mortality-30d/versions/1/">model card' in html


@pytest.mark.parametrize("n_earlier", [1, 15])
def test_alert_page_query_count_is_constant(
    alice_client, ui_model_version, n_earlier, django_assert_num_queries
):
    patient = patient_create(unit="MICU")
    for i in range(n_earlier):
        prediction_create(model_version=ui_model_version, patient=patient, risk=0.3, scored_at=scored(i + 1))
    current = prediction_create(model_version=ui_model_version, patient=patient, risk=0.71)
    url = reverse("alert-detail", args=[current.alert.pk])
    alice_client.get(url)  # the first view inserts the AlertView row; measure a repeat view
    # session, user, profile, alert, prediction+model, audit insert, alert view (get), explanation,
    # feature schema, earlier scores, whether this is the patient's present state (a later score of
    # the model in the user's units, then outside them, the unit's newest score), previous actions:
    # 14 whatever the history.
    with django_assert_num_queries(14):
        response = alice_client.get(url)
    assert len(response.context["detail"].earlier) == n_earlier


def test_low_tier_cue_stays_minimal_until_full_is_asked(alice_client, ui_model_version):
    patient = patient_create(unit="MICU")
    earlier = prediction_create(
        model_version=ui_model_version, patient=patient, risk=0.3, scored_at=scored(2)
    )
    low = prediction_create(model_version=ui_model_version, patient=patient, risk=0.08)
    url = reverse("prediction-detail", args=[low.pk])
    cue = alice_client.get(url).content.decode()
    assert "Scores of this patient" not in cue
    assert 'class="trend ' not in cue
    full = alice_client.get(url, {"full": "1"}).content.decode()
    assert "Scores of this patient" in full
    assert reverse("prediction-detail", args=[earlier.pk]) in full


CURRENCY = 'id="score-currency"'


def _page(client, prediction) -> str:
    response = client.get(reverse("prediction-detail", args=[prediction.pk]) + "?full=1")
    assert response.status_code == 200
    return response.content.decode()


def test_an_older_score_says_the_patient_was_scored_again_and_links_the_latest(
    alice_client, ui_model_version
):
    patient = patient_create(unit="MICU")
    old = prediction_create(model_version=ui_model_version, patient=patient, risk=0.71, scored_at=scored(3))
    new = prediction_create(model_version=ui_model_version, patient=patient, risk=0.20, scored_at=scored(1))

    page = _page(alice_client, old)
    assert CURRENCY in page and "This patient was scored again at" in page
    assert f'href="{reverse("prediction-detail", args=[new.pk])}">open the latest score</a>' in page
    assert CURRENCY not in _page(alice_client, new)  # the latest, in a unit still scored


def test_the_latest_score_of_a_patient_who_left_the_unit_says_so(alice_client, ui_model_version, settings):
    settings.WORKLIST_LEFT_AFTER_HOURS = 12
    gone = prediction_create(model_version=ui_model_version, unit="MICU", risk=0.71, scored_at=scored(30))
    prediction_create(model_version=ui_model_version, unit="MICU", risk=0.10, scored_at=scored(1))

    page = _page(alice_client, gone)
    assert CURRENCY in page and "it is 29 hours older than the newest score of MICU" in page
    assert "the patient has probably left the unit" in page
    gone.refresh_from_db()
    prediction_create(model_version=ui_model_version, unit="MICU", risk=0.10, scored_at=scored(-60))
    assert "it is 3 days older than the newest score of MICU" in _page(alice_client, gone)


def test_a_patient_moved_to_a_unit_the_user_does_not_see_is_said_so_without_the_score(
    alice_client, ui_model_version
):
    patient = patient_create(unit="MICU")
    here = prediction_create(model_version=ui_model_version, patient=patient, risk=0.71, scored_at=scored(3))
    moved = prediction_create(model_version=ui_model_version, patient=patient, risk=0.33, scored_at=scored(1))
    # Transferred: the new score is CCU's (the factory scores in the patient's unit).
    Prediction.objects.filter(pk=moved.pk).update(unit="CCU")
    assert CurrentScore.objects.filter(prediction=moved).update(unit="CCU") == 1

    page = _page(alice_client, here)
    assert CURRENCY in page and "scored again later, in a unit you do not see" in page
    assert "CCU" not in page and "33%" not in page


def test_a_later_score_of_another_model_is_not_a_newer_score_of_this_one(alice_client, ui_model_version):
    """Review finding: the notice compared with the patient's latest score of any model, so a
    mortality score read 'scored again' and linked to a sepsis model's score."""
    from tests.fixtures.factories import model_version_create

    other = model_version_create(name="icu-sepsis-48h")
    patient = patient_create(unit="MICU")
    mortality = prediction_create(
        model_version=ui_model_version, patient=patient, risk=0.71, scored_at=scored(3)
    )
    sepsis = prediction_create(model_version=other, patient=patient, risk=0.20, scored_at=scored(1))

    assert CURRENCY not in _page(alice_client, mortality)
    assert CURRENCY not in _page(alice_client, sepsis)
    again = prediction_create(
        model_version=ui_model_version, patient=patient, risk=0.5, scored_at=scored(0.5)
    )
    page = _page(alice_client, mortality)
    assert f'href="{reverse("prediction-detail", args=[again.pk])}">open the latest score</a>' in page
