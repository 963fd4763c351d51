"""The worklist's background refresh sends only what changed: 304 when the page's list is current,
else the rows in order with the html of only the new or changed ones (clinician_ui/worklist_poll)."""

from datetime import timedelta
from unittest import mock

import pytest
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone

from explanations.models import Explanation
from patients.models import Alert, AuditEvent
from tests.fixtures.factories import engine_results_set, prediction_create


def page_version(client, **params) -> str:
    response = client.get(reverse("worklist"), params)
    assert response.status_code == 200
    version = response.context["list_version"]
    assert f'data-version="{version}"' in response.content.decode()
    return version


def poll(client, version: str | None, **params):
    headers = {"HTTP_IF_NONE_MATCH": f'"{version}"'} if version else {}
    return client.get(reverse("worklist-json"), params, **headers)


def full(rows: list[dict]) -> list[str]:
    """The keys of the rows sent with their html."""
    return [row["key"] for row in rows if "html" in row]


@pytest.fixture
def ward(ui_model_version):
    """Alice's MICU: three alerts and two low-tier patients."""
    alerts = [prediction_create(model_version=ui_model_version, risk=r) for r in (0.9, 0.7, 0.4)]
    low = [prediction_create(model_version=ui_model_version, risk=r) for r in (0.2, 0.1)]
    return alerts, low


def test_an_unchanged_list_answers_304_with_no_body(alice_client, ward):
    version = page_version(alice_client)
    events = AuditEvent.objects.count()
    response = poll(alice_client, version)
    assert response.status_code == 304
    assert response.content == b""
    assert response["ETag"] == f'"{version}"'
    assert "private" in response["Cache-Control"] and "no-cache" in response["Cache-Control"]
    # As before: the page load is audited, not each poll.
    assert AuditEvent.objects.count() == events


def test_a_changed_row_is_resent_and_the_unchanged_ones_by_key_alone(alice_client, ward):
    alerts, low = ward
    version = page_version(alice_client)
    Alert.objects.filter(pk=alerts[1].alert.pk).update(state=Alert.State.ACKNOWLEDGED)

    response = poll(alice_client, version)
    assert response.status_code == 200
    body = response.json()
    assert body["base"] == version
    assert response["ETag"] == f'"{body["version"]}"' != f'"{version}"'
    # Every row in order; only the acknowledged one with its html and what it announces.
    assert [row["key"] for row in body["alerts"]] == [f"alert-{p.alert.pk}" for p in alerts]
    assert [row["key"] for row in body["low"]] == [f"prediction-{p.pk}" for p in low]
    assert full(body["alerts"]) == [f"alert-{alerts[1].alert.pk}"]
    assert full(body["low"]) == []
    assert body["alerts"][0] == {"key": f"alert-{alerts[0].alert.pk}"}
    changed = body["alerts"][1]
    assert "Acknowledged" in changed["html"]
    assert (changed["state"], changed["risk"], changed["tier"]) == ("acknowledged", 0.7, "high")
    # The next poll with the new version: nothing more changed.
    assert poll(alice_client, body["version"]).status_code == 304


def test_a_new_score_is_sent_in_full_and_the_row_it_replaces_leaves_the_order(alice_client, ward):
    alerts, low = ward
    version = page_version(alice_client)
    # The first patient is scored again, lower: a new alert (a new row) replaces the old one.
    rescored = prediction_create(model_version=alerts[0].model_version, patient=alerts[0].patient, risk=0.55)

    body = poll(alice_client, version).json()
    keys = [row["key"] for row in body["alerts"]]
    assert f"alert-{alerts[0].alert.pk}" not in keys
    assert keys == [
        f"alert-{alerts[1].alert.pk}",
        f"alert-{rescored.alert.pk}",
        f"alert-{alerts[2].alert.pk}",
    ]
    assert full(body["alerts"]) == [f"alert-{rescored.alert.pk}"]
    sent = body["alerts"][1]
    assert '<td class="num">55%</td>' in sent["html"]
    assert "risk down</span> −35 pts</span>" in sent["html"]
    assert [p["risk"] for p in sent["trend"]["points"]] == [0.9, 0.55]


def test_a_row_whose_content_changed_in_place_is_resent(alice_client, ward):
    """The same alert, its explanation now ready and abstaining: same key, new content."""
    alerts, _low = ward
    version = page_version(alice_client)
    engine_results_set(alerts[2], abstain=True, abstain_reason="Out of distribution.")
    Explanation.objects.filter(prediction=alerts[2]).update(status=Explanation.Status.READY)

    body = poll(alice_client, version).json()
    assert full(body["alerts"]) == [f"alert-{alerts[2].alert.pk}"]
    assert "Model abstains" in body["alerts"][2]["html"]
    assert body["alerts"][2]["abstains"] is True


def test_a_row_that_left_the_list_disappears_from_the_order(alice_client, ward):
    alerts, low = ward
    version = page_version(alice_client)
    # The second patient's latest score is low tier: they move from the alerts to the low list.
    moved = prediction_create(model_version=alerts[1].model_version, patient=alerts[1].patient, risk=0.15)

    body = poll(alice_client, version).json()
    assert [row["key"] for row in body["alerts"]] == [
        f"alert-{alerts[0].alert.pk}",
        f"alert-{alerts[2].alert.pk}",
    ]
    assert full(body["alerts"]) == []
    assert [row["key"] for row in body["low"]] == [
        f"prediction-{low[0].pk}",
        f"prediction-{moved.pk}",
        f"prediction-{low[1].pk}",
    ]
    assert full(body["low"]) == [f"prediction-{moved.pk}"]
    assert body["pages"]["alerts"]["total"] == 2


def test_the_fired_minute_alone_never_resends_a_row(alice_client, ward):
    """The page keeps "fired ... ago" current itself: a row's signature ignores the clock."""
    alerts, _low = ward
    before = poll(alice_client, None).json()
    Alert.objects.update(created_at=timezone.now() - timedelta(minutes=42))
    Alert.objects.filter(pk=alerts[0].alert.pk).update(created_at=timezone.now() - timedelta(hours=3))
    version = page_version(alice_client)
    html = poll(alice_client, None).json()["alerts"][0]["html"]
    assert 'data-since title="' in html and "3\xa0hours ago</time>" in html

    later = timezone.now() + timedelta(minutes=5)
    with mock.patch("django.utils.timezone.now", return_value=later):
        response = poll(alice_client, version)
        moved = poll(alice_client, None).json()["alerts"][0]
    assert response.status_code == 304
    assert "3\xa0hours, 5\xa0minutes ago</time>" in moved["html"]
    # The created_at is shown (datetime, title), so moving it is a change; the minute is not.
    assert moved["sig"] != before["alerts"][0]["sig"]


def test_a_filter_or_page_change_gets_every_row_in_full(alice_client, ward):
    alerts, low = ward
    version = page_version(alice_client)
    body = poll(alice_client, version, tier="high").json()
    assert body["base"] is None
    assert [row["key"] for row in body["alerts"]] == [f"alert-{p.alert.pk}" for p in alerts[:2]]
    assert full(body["alerts"]) == [row["key"] for row in body["alerts"]]
    # The filtered page's own version is current for the filtered poll.
    filtered = page_version(alice_client, tier="high")
    assert poll(alice_client, filtered, tier="high").status_code == 304
    # ... and not for the unfiltered one, which gets every row again.
    unfiltered = poll(alice_client, filtered).json()
    assert unfiltered["base"] is None
    assert len(full(unfiltered["alerts"])) == 3
    assert len(full(unfiltered["low"])) == 2


def test_pages_have_their_own_versions(alice_client, ward, monkeypatch):
    from clinician_ui.selectors import worklist

    monkeypatch.setattr(worklist, "WORKLIST_PAGE_SIZE", 2)
    alerts, _low = ward
    second = page_version(alice_client, page="2")
    assert poll(alice_client, second, page="2").status_code == 304
    first = poll(alice_client, second).json()
    assert first["base"] is None
    assert full(first["alerts"]) == [f"alert-{p.alert.pk}" for p in alerts[:2]]
    # A new alert pushes the second page's rows along: its first row now came from page 1.
    new = prediction_create(model_version=alerts[0].model_version, risk=0.95)
    body = poll(alice_client, second, page="2").json()
    assert body["base"] == second
    assert [row["key"] for row in body["alerts"]] == [f"alert-{p.alert.pk}" for p in alerts[1:]]
    assert full(body["alerts"]) == [f"alert-{alerts[1].alert.pk}"]
    assert body["pages"]["alerts"]["total"] == 4
    assert new.alert.pk not in [row.get("alert") for row in body["alerts"]]


def test_an_unknown_or_forgotten_version_gets_every_row_in_full(alice_client, ward):
    version = page_version(alice_client)
    assert poll(alice_client, "0" * 32).json()["base"] is None
    cache.delete(f"worklist-list:{version}")
    Alert.objects.filter(pk=ward[0][0].alert.pk).update(state=Alert.State.ACCEPTED)
    body = poll(alice_client, version).json()
    assert body["base"] is None
    assert len(full(body["alerts"])) == 3 and len(full(body["low"])) == 2


def test_another_units_patient_never_appears(alice_client, bob_client, ward, ui_model_version):
    alerts, _low = ward
    version = page_version(alice_client)
    ccu = prediction_create(model_version=ui_model_version, unit="CCU", risk=0.99)
    # A CCU alert is no change to Alice's list.
    assert poll(alice_client, version).status_code == 304
    Alert.objects.filter(pk=alerts[0].alert.pk).update(state=Alert.State.ACKNOWLEDGED)
    body = poll(alice_client, version).json()
    assert body["base"] == version
    assert f"alert-{ccu.alert.pk}" not in [row["key"] for row in body["alerts"]]
    assert ccu.patient.display_name not in str(body)

    # Bob (CCU) polling with Alice's version learns nothing of her rows: his own, in full.
    theirs = poll(bob_client, version)
    assert theirs.status_code == 200
    assert [row["key"] for row in theirs.json()["alerts"]] == [f"alert-{ccu.alert.pk}"]
    assert full(theirs.json()["alerts"]) == [f"alert-{ccu.alert.pk}"]
    assert theirs.json()["low"] == []
    assert alerts[0].patient.display_name not in theirs.content.decode()


def test_a_poll_needs_a_login_whatever_it_claims_to_hold(client, alice_client, ward):
    version = page_version(alice_client)
    response = poll(client, version)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("n_alerts", [3, 30])
def test_delta_and_304_polls_make_no_more_queries(
    alice_client, ui_model_version, n_alerts, django_assert_max_num_queries
):
    for i in range(n_alerts):
        prediction_create(model_version=ui_model_version, risk=0.3 + (i % 60) / 100)
    for _ in range(n_alerts // 3):
        prediction_create(model_version=ui_model_version, risk=0.05)
    version = page_version(alice_client)
    # session, user, profile, the units' newest scores and who left, alerts, low list, the listed
    # patients' last scores: as a full poll.
    with django_assert_max_num_queries(8):
        assert poll(alice_client, version).status_code == 304
    Alert.objects.filter(pk=Alert.objects.order_by("pk").first().pk).update(state=Alert.State.ACKNOWLEDGED)
    # A delta carries patients: the same reads and its audit insert (a 304 carries none, above).
    with django_assert_max_num_queries(9):
        body = poll(alice_client, version).json()
    assert body["base"] == version
    assert len(body["alerts"]) == n_alerts and len(full(body["alerts"])) == 1
