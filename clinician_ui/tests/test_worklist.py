"""The worklist: one row per patient (their current alert), high tier first then risk, filters,
the low-tier list, and a constant number of queries."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from clinician_ui.selectors import worklist_get
from patients.models import Alert
from tests.fixtures.factories import patient_create, prediction_create


def rows(response) -> list[Alert]:
    return response.context["worklist"].alerts


def test_sorted_by_tier_then_risk_with_one_row_per_patient(alice_client, ui_model_version):
    mv = ui_model_version
    medium_hi = prediction_create(model_version=mv, risk=0.45)
    high_lo = prediction_create(model_version=mv, risk=0.55)
    high_hi = prediction_create(model_version=mv, risk=0.90)
    # A patient scored twice: only the latest score's alert is current.
    patient = patient_create(unit="MICU")
    earlier = timezone.now() - timedelta(hours=2)
    prediction_create(model_version=mv, patient=patient, risk=0.95, scored_at=earlier)
    latest = prediction_create(model_version=mv, patient=patient, risk=0.30)

    response = alice_client.get(reverse("worklist"))
    assert [a.prediction_id for a in rows(response)] == [high_hi.pk, high_lo.pk, medium_hi.pk, latest.pk]
    html = response.content.decode()
    assert "90%" in html
    assert html.count(patient.display_name) == 1


def test_patient_whose_latest_score_is_low_moves_to_the_low_list(alice_client, ui_model_version):
    patient = patient_create(unit="MICU")
    prediction_create(
        model_version=ui_model_version,
        patient=patient,
        risk=0.8,
        scored_at=timezone.now() - timedelta(hours=1),
    )
    low = prediction_create(model_version=ui_model_version, patient=patient, risk=0.08)
    response = alice_client.get(reverse("worklist"))
    assert rows(response) == []
    assert response.context["worklist"].low == [low]
    html = response.content.decode()
    assert "Low tier: below the alert threshold" in html and "the same in every unit" in html
    assert reverse("prediction-detail", args=[low.pk]) in html
    assert "8%" in html


def test_badge_carries_tier_by_text_and_shape(alice_client, ui_model_version):
    prediction_create(model_version=ui_model_version, risk=0.7)
    prediction_create(model_version=ui_model_version, risk=0.3)
    html = alice_client.get(reverse("worklist")).content.decode()
    assert 'aria-hidden="true">▲</span> High' in html
    assert 'aria-hidden="true">◆</span> Medium' in html


def test_row_shows_unit_bed_state_and_time_since_fired(alice_client, ui_model_version):
    prediction = prediction_create(model_version=ui_model_version, risk=0.7)
    Alert.objects.filter(pk=prediction.alert.pk).update(
        created_at=timezone.now() - timedelta(minutes=42), state=Alert.State.ACKNOWLEDGED
    )
    html = alice_client.get(reverse("worklist")).content.decode()
    assert f"MICU / {prediction.bed}" in html
    assert "42\xa0minutes ago" in html
    assert "Acknowledged" in html


def test_filter_by_tier_and_unit(charlie_client, ui_model_version):
    mv = ui_model_version
    micu_high = prediction_create(model_version=mv, unit="MICU", risk=0.8)
    micu_medium = prediction_create(model_version=mv, unit="MICU", risk=0.3)
    ccu_high = prediction_create(model_version=mv, unit="CCU", risk=0.7)
    ccu_low = prediction_create(model_version=mv, unit="CCU", risk=0.1)

    by_tier = charlie_client.get(reverse("worklist"), {"tier": "high"})
    assert [a.prediction_id for a in rows(by_tier)] == [micu_high.pk, ccu_high.pk]
    assert by_tier.context["worklist"].low == []

    by_unit = charlie_client.get(reverse("worklist"), {"unit": "MICU"})
    assert [a.prediction_id for a in rows(by_unit)] == [micu_high.pk, micu_medium.pk]
    assert by_unit.context["worklist"].low == []

    low = charlie_client.get(reverse("worklist"), {"tier": "low", "unit": "CCU"})
    assert rows(low) == []
    assert low.context["worklist"].low == [ccu_low]
    assert by_unit.context["worklist"].units == ["CCU", "MICU"]


def test_clinician_cannot_filter_into_another_unit(alice_client, ui_model_version):
    prediction_create(model_version=ui_model_version, unit="CCU", risk=0.9)
    response = alice_client.get(reverse("worklist"), {"unit": "CCU"})
    assert rows(response) == []
    assert response.context["worklist"].units == ["MICU"]
    assert response.context["worklist"].unit is None


@pytest.mark.parametrize("n_alerts", [3, 30])
def test_worklist_query_count_does_not_grow_with_alerts(
    alice_client, ui_model_version, n_alerts, django_assert_max_num_queries
):
    for i in range(n_alerts):
        prediction_create(model_version=ui_model_version, risk=0.3 + (i % 60) / 100)
    for _ in range(n_alerts // 3):
        prediction_create(model_version=ui_model_version, risk=0.05)
    # Every patient has history too, so the sparklines have something to draw.
    for alert in Alert.objects.all():
        prediction_create(
            model_version=ui_model_version,
            patient=alert.patient,
            risk=0.2,
            scored_at=timezone.now() - timedelta(hours=3),
        )
    # session, user, profile, the units' newest scores and the count of patients who left, alerts,
    # low list, the listed patients' last scores (one query), audit insert: 9 whether 3 or 30
    # alerts; and, once a minute per process, the listed versions' thresholds and reference rates.
    with django_assert_max_num_queries(10):
        response = alice_client.get(reverse("worklist"))
    assert len(rows(response)) == n_alerts
    assert len(response.context["worklist"].low) == n_alerts // 3
    assert all(len(a.trend.points) == 2 for a in rows(response))
    # The background refresh runs the same reads and, carrying patients, its own audit insert.
    with django_assert_max_num_queries(9):
        body = alice_client.get(reverse("worklist-json")).json()
    assert len(body["alerts"]) == n_alerts
    assert len(body["low"]) == n_alerts // 3


def test_worklist_is_paginated_and_counts_every_page(alice_client, ui_model_version, monkeypatch):
    from clinician_ui.selectors import worklist

    monkeypatch.setattr(worklist, "WORKLIST_PAGE_SIZE", 2)
    alerts = [prediction_create(model_version=ui_model_version, risk=r) for r in (0.9, 0.8, 0.7, 0.3, 0.26)]
    low = [prediction_create(model_version=ui_model_version, risk=r) for r in (0.2, 0.1, 0.05)]

    first = alice_client.get(reverse("worklist"))
    assert [a.prediction_id for a in rows(first)] == [alerts[0].pk, alerts[1].pk]
    html = first.content.decode()
    assert '<span class="count" id="alerts-count">5</span>' in html
    assert "Alerts 1–2 of 5 · page 1 of 3" in html
    assert '<span class="count" id="low-count">3</span>' in html

    third = alice_client.get(reverse("worklist"), {"page": "3", "low_page": "2"})
    assert [a.prediction_id for a in rows(third)] == [alerts[4].pk]
    assert third.context["worklist"].low == [low[2]]
    assert 'href="?page=2&amp;low_page=2" rel="prev"' in third.content.decode()
    # The live poll asks with the page's own query string and stays on that page.
    body = alice_client.get(reverse("worklist-json"), {"page": "3", "low_page": "2"}).json()
    assert [row["alert"] for row in body["alerts"]] == [alerts[4].alert.pk]
    assert body["pages"]["alerts"] == {"number": 3, "size": 2, "total": 5, "pages": 3}
    # A page past the end (alerts resolved meanwhile) shows the last page; junk is a 400 naming it.
    assert [a.prediction_id for a in rows(alice_client.get(reverse("worklist"), {"page": "9"}))] == [
        alerts[4].pk
    ]
    junk = alice_client.get(reverse("worklist"), {"page": "x"})
    assert junk.status_code == 400 and "page" in junk.content.decode()


def test_a_back_filled_older_score_does_not_replace_the_current_one(
    charlie_client, model_version, prediction_payload, service_client
):
    """Through ingest: the current score is the latest scored_at, whatever the arrival order."""
    from patients.models import CurrentScore

    payload = prediction_payload(9, scored_at="2026-02-01T00:00:00Z")  # a high-tier patient
    later = service_client.post("/api/v1/predictions/", payload, format="json").json()
    older = prediction_payload(0, external_id="backfill-1", patient=payload["patient"])
    older["encounter_id"] = payload["encounter_id"]
    back = service_client.post("/api/v1/predictions/", older, format="json")
    assert back.status_code == 201, back.content
    assert back.json()["tier"] == "low" and later["tier"] == "high"

    current = CurrentScore.objects.get(patient__external_id=payload["patient"]["id"])
    assert current.prediction_id == later["id"]
    # The patient stays on the alert list with the later (high) score.
    listed = rows(charlie_client.get(reverse("worklist")))
    assert [a.prediction_id for a in listed] == [later["id"]]


def test_the_current_score_moves_with_what_the_lists_read_from_its_prediction_and_alert(
    charlie_client, model_version, prediction_payload, service_client
):
    """Through ingest, single and bulk: the unit, bed, tier, risk and alert the lists filter and
    sort on are the current prediction's and its alert's, and move only forward with the pointer."""
    from patients.models import Alert, CurrentScore

    high = prediction_payload(9, scored_at="2026-02-01T00:00:00Z")  # a high-tier patient
    stored = service_client.post("/api/v1/predictions/", high, format="json").json()
    alert = Alert.objects.get(prediction_id=stored["id"])
    current = CurrentScore.objects.get(patient__external_id=high["patient"]["id"])
    assert (current.prediction_id, current.unit, current.bed, current.tier, current.risk) == (
        stored["id"], high["patient"]["unit"], high["patient"]["bed"], "high", stored["risk"],
    )  # fmt: skip
    assert (current.alert_id, current.alerted_at) == (alert.pk, alert.created_at)

    # One bulk request: a back-filled older score, then a later low-tier one from another bed.
    older = prediction_payload(0, external_id="backfill-2", patient=dict(high["patient"]))
    later = prediction_payload(0, external_id="later-low", scored_at="2026-02-01T01:00:00Z")
    later["patient"] = dict(high["patient"], bed="bed-12")
    for item in (older, later):
        item["encounter_id"] = high["encounter_id"]
    results = service_client.post("/api/v1/predictions/bulk/", [older, later], format="json").json()[
        "results"
    ]
    assert [r["status"] for r in results] == [201, 201], results
    assert results[1]["tier"] == "low"

    current.refresh_from_db()
    assert (current.prediction_id, current.bed, current.tier, current.risk) == (
        results[1]["id"], "bed-12", "low", results[1]["risk"],
    )  # fmt: skip
    assert (current.alert_id, current.alerted_at) == (None, None)
    page = charlie_client.get(reverse("worklist")).context["worklist"]
    assert page.alerts == []
    assert [p.pk for p in page.low] == [results[1]["id"]]


def test_an_action_moves_the_alert_between_state_filters(alice_client, ui_model_version):
    """The alert's state is read from the alert, so a clinician's action shows at once."""
    acted = prediction_create(model_version=ui_model_version, risk=0.7).alert
    untouched = prediction_create(model_version=ui_model_version, risk=0.6).alert
    response = alice_client.post(
        reverse("alert-actions", args=[acted.pk]),
        {"action": "acknowledge", "reason": "reviewing"},
        content_type="application/json",
    )
    assert response.status_code == 201, response.content

    acknowledged = alice_client.get(reverse("worklist"), {"state": "acknowledged"}).context["worklist"]
    assert [a.pk for a in acknowledged.alerts] == [acted.pk]
    assert acknowledged.alerts[0].state == Alert.State.ACKNOWLEDGED
    assert acknowledged.alerts_page.total == 1
    fresh = alice_client.get(reverse("worklist-json"), {"state": "new"}).json()
    assert [row["alert"] for row in fresh["alerts"]] == [untouched.pk]
    assert fresh["pages"]["alerts"]["total"] == 1


def test_a_bulk_refresh_finds_the_current_scores_ingest_kept(ui_model_version):
    """patients_current_refresh (bulk writers, benchmarks) copies the same values as ingest."""
    from explanations.services.current import patients_current_refresh
    from patients.models import CurrentScore

    patient = patient_create(unit="MICU")
    prediction_create(
        model_version=ui_model_version,
        patient=patient,
        risk=0.9,
        scored_at=timezone.now() - timedelta(hours=2),
    )
    prediction_create(model_version=ui_model_version, patient=patient, risk=0.3)
    prediction_create(model_version=ui_model_version, risk=0.1)
    prediction_create(model_version=ui_model_version, unit="CCU", risk=0.7)
    columns = (
        "patient_id",
        "prediction_id",
        "scored_at",
        "unit",
        "bed",
        "tier",
        "risk",
        "alert_id",
        "alerted_at",
    )
    kept = list(CurrentScore.objects.order_by("pk").values_list(*columns))
    assert [(row[5], row[7] is not None) for row in kept] == [
        ("medium", True),
        ("low", False),
        ("high", True),
    ]

    CurrentScore.objects.all().delete()
    patients_current_refresh(patient_ids=[patient.pk])
    assert list(CurrentScore.objects.values_list(*columns)) == kept[:1]
    patients_current_refresh()
    assert list(CurrentScore.objects.order_by("pk").values_list(*columns)) == kept


def test_every_listed_patient_carries_two_identifiers(alice_client, ui_model_version):
    """Name and patient id on every row, alerts and low-tier list alike, so no one acts on the wrong row."""
    high = prediction_create(model_version=ui_model_version, risk=0.90)
    low = prediction_create(model_version=ui_model_version, risk=0.05)

    html = alice_client.get(reverse("worklist")).content.decode()

    for prediction in (high, low):
        patient = prediction.patient
        assert patient.display_name and patient.external_id != patient.display_name
        name_at = html.index(patient.display_name)
        id_at = html.index(f'<span class="patient-id" title="Patient ID">ID {patient.external_id}</span>')
        assert 0 < id_at - name_at < 200  # beside the name


def test_lanes_decisions_first_then_abstentions_by_time_then_decided(alice, alice_client, ui_model_version):
    """An alert still needing a decision comes first; an abstaining one is ranked by neither its tier
    nor its (unreliable) risk but has a lane of its own, newest first; a decided one (accepted,
    escalated or dismissed) moves below both, and back up if someone only acknowledges it later."""
    from clinician_ui.services import alert_action_record
    from tests.fixtures.factories import engine_results_set

    mv, now = ui_model_version, timezone.now()
    open_medium = prediction_create(model_version=mv, risk=0.40)
    dismissed = prediction_create(model_version=mv, risk=0.95)
    accepted = prediction_create(model_version=mv, risk=0.60)
    older_abstains = prediction_create(model_version=mv, risk=0.97, scored_at=now - timedelta(hours=3))
    newer_abstains = prediction_create(model_version=mv, risk=0.30, scored_at=now - timedelta(hours=1))
    Alert.objects.filter(pk=older_abstains.alert.pk).update(created_at=now - timedelta(hours=3))
    Alert.objects.filter(pk=newer_abstains.alert.pk).update(created_at=now - timedelta(hours=1))
    for prediction in (older_abstains, newer_abstains):
        engine_results_set(prediction, abstain=True, abstain_reason="Out of distribution.")
    alert_action_record(alert=dismissed.alert, user=alice, action="dismiss", reason="already_aware")
    alert_action_record(alert=accepted.alert, user=alice, action="accept", reason="treatment_changed")

    order = [a.prediction_id for a in rows(alice_client.get(reverse("worklist")))]
    assert order == [open_medium.pk, newer_abstains.pk, older_abstains.pk, dismissed.pk, accepted.pk]
    states = {a.prediction_id: a.get_state_display() for a in rows(alice_client.get(reverse("worklist")))}
    assert (states[dismissed.pk], states[accepted.pk], states[open_medium.pk]) == (
        "Dismissed",
        "Accepted",
        "New",
    )

    alert_action_record(alert=dismissed.alert, user=alice, action="acknowledge", reason="reviewing")
    order = [a.prediction_id for a in rows(alice_client.get(reverse("worklist")))]
    assert order == [dismissed.pk, open_medium.pk, newer_abstains.pk, older_abstains.pk, accepted.pk]


def test_patients_who_left_their_unit_are_counted_apart_and_a_stopped_feed_hides_nobody(
    charlie, charlie_client, ui_model_version
):
    """A patient whose latest score is over WORKLIST_LEFT_AFTER_HOURS (12) older than the newest of
    their unit has left it (discharged, moved) or their scores stopped: counted, linked, not listed.
    A unit whose whole feed stopped keeps all its patients: nobody disappears because scoring did."""
    now = timezone.now()
    here = prediction_create(model_version=ui_model_version, unit="MICU", risk=0.8, scored_at=now)
    left = prediction_create(
        model_version=ui_model_version, unit="MICU", risk=0.9, scored_at=now - timedelta(hours=30)
    )
    left_low = prediction_create(
        model_version=ui_model_version, unit="MICU", risk=0.05, scored_at=now - timedelta(hours=26)
    )
    stopped = prediction_create(
        model_version=ui_model_version, unit="CCU", risk=0.7, scored_at=now - timedelta(hours=40)
    )

    data = worklist_get(user=charlie)
    assert [a.prediction_id for a in data.alerts] == [here.pk, stopped.pk]
    assert data.low == [] and data.left == 2
    html = charlie_client.get(reverse("worklist")).content.decode()
    assert "2 patients not listed: their latest score is more than 12 hours older than the newest" in html
    assert 'href="?left=1&amp;page=1&amp;low_page=1">List them too</a>' in html

    everyone = worklist_get(user=charlie, include_left=True)
    assert [a.prediction_id for a in everyone.alerts] == [left.pk, here.pk, stopped.pk]
    assert everyone.low == [left_low] and everyone.left == 0
    html = charlie_client.get(reverse("worklist"), {"left": "1"}).content.decode()
    assert "Also listing patients whose latest score is more than 12 hours older" in html


def test_an_alert_that_arrived_late_says_how_long_after_its_score(alice_client, ui_model_version):
    """ "Alert fired 0 minutes ago" beside a score of 3 hours ago would contradict it: the row and the
    alert page say the score arrived late."""
    late = prediction_create(
        model_version=ui_model_version, risk=0.8, scored_at=timezone.now() - timedelta(hours=3)
    )
    prompt = prediction_create(model_version=ui_model_version, risk=0.7)
    html = alice_client.get(reverse("worklist")).content.decode()
    row = html[html.index(f'data-key="alert-{late.alert.pk}"') :]
    assert "scored 3\xa0hours before it arrived" in row[: row.index("</tr>")]
    row = html[html.index(f'data-key="alert-{prompt.alert.pk}"') :]
    assert "before it arrived" not in row[: row.index("</tr>")]
    page = alice_client.get(reverse("alert-detail", args=[late.alert.pk])).content.decode()
    assert "when its score arrived (3\xa0hours after it was computed)." in page
