"""Session limits (issue 15, finding 6): an idle timeout that background refreshes do not reset, an
absolute limit, a cookie that ends with the browser, and GET /session/ for the page's warning."""

import time

import pytest
from django.test import Client

from accounts.sessions import ACTIVE_AT, LOGIN_AT
from tests.fixtures.people import PASSWORD

pytestmark = pytest.mark.django_db


def _log_in(username: str) -> Client:
    client = Client()
    response = client.post("/login/", {"username": username, "password": PASSWORD})
    assert response.status_code == 302
    return client


def _age(client: Client, *, idle: float = 0, since_login: float = 0) -> None:
    session = client.session
    now = time.time()
    session[ACTIVE_AT] = now - idle
    session[LOGIN_AT] = now - since_login
    session.save()


def test_the_session_cookie_ends_with_the_browser(alice):
    client = Client()
    response = client.post("/login/", {"username": "alice", "password": PASSWORD})
    cookie = response.cookies["sessionid"]
    assert cookie["expires"] == "" and cookie["max-age"] == ""


def test_twenty_minutes_without_activity_signs_out(alice):
    client = _log_in("alice")
    _age(client, idle=19 * 60)
    assert client.get("/").status_code == 200  # 19 minutes: still signed in, and the clock restarts
    _age(client, idle=20 * 60 + 1)

    response = client.get("/")

    assert response.status_code == 302
    assert response["Location"] == "/login/?next=%2F"
    assert "_auth_user_id" not in client.session
    # Signed out for good: the next request is anonymous too.
    assert client.get("/worklist.json").status_code == 302
    login_page = client.get(response["Location"])
    assert "signed out after a period without activity" in login_page.content.decode()


def test_background_refreshes_do_not_keep_a_session_alive(alice):
    client = _log_in("alice")
    _age(client, idle=5 * 60)
    before = client.session[ACTIVE_AT]

    polled = client.get("/worklist.json", HTTP_X_SIGHTLINE_BACKGROUND="1")

    assert polled.status_code == 200
    assert client.session[ACTIVE_AT] == before
    _age(client, idle=21 * 60)
    assert client.get("/worklist.json", HTTP_X_SIGHTLINE_BACKGROUND="1").status_code == 302


def test_the_absolute_limit_ends_an_active_session(alice):
    client = _log_in("alice")
    _age(client, idle=1, since_login=12 * 3600 + 1)

    response = client.get("/")

    assert response["Location"] == "/login/?next=%2F"
    assert "_auth_user_id" not in client.session
    assert "reached its time limit" in client.get(response["Location"]).content.decode()


def test_an_api_call_on_an_ended_session_is_401_json(alice, ui_model_version):
    from tests.fixtures.factories import prediction_create

    prediction = prediction_create(model_version=ui_model_version, unit="MICU")
    client = _log_in("alice")
    _age(client, idle=30 * 60)

    response = client.get(f"/api/v1/predictions/{prediction.pk}/explanation/")

    assert (response.status_code, response.json()["error"]) == (401, "not_authenticated")


def test_session_status_tells_the_page_what_is_left(alice, settings):
    client = _log_in("alice")
    _age(client, idle=15 * 60, since_login=3600)

    status = client.get("/session/", HTTP_X_SIGHTLINE_BACKGROUND="1").json()
    assert 4 * 60 <= status["idle"] <= 5 * 60
    assert 11 * 3600 - 5 <= status["absolute"] <= 11 * 3600
    assert status["warning"] == settings.SESSION_IDLE_WARNING_SECONDS
    # Asked without the background header ("Stay signed in"): activity, the idle clock restarts.
    assert client.get("/session/").json()["idle"] >= 20 * 60 - 2
    assert Client().get("/session/").status_code == 401


def test_a_token_call_has_no_session_to_time(service_client):
    response = service_client.get("/api/v1/predictions/1/explanation/")
    assert response.status_code == 403
    assert "sessionid" not in response.cookies
