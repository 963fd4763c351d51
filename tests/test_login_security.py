"""Login throttling (clinician_ui.login_throttle) and the session and CSRF cookies in production."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import pytest
from django.contrib.auth import forms as auth_forms
from django.core.cache import cache
from django.test import Client

from clinician_ui import login_throttle
from tests.fixtures.people import PASSWORD

ROOT = Path(__file__).resolve().parent.parent
WAIT_TEXT = b"Too many failed login attempts"


class Clock:
    """login_throttle's clock, moved by the test instead of sleeping."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def clock(settings, monkeypatch) -> Clock:
    settings.LOGIN_FAILURE_LIMIT = 5
    settings.LOGIN_FAILURE_IP_LIMIT = 20
    settings.LOGIN_BACKOFF_SECONDS = 1
    settings.LOGIN_BACKOFF_MAX_SECONDS = 300
    settings.LOGIN_BACKOFF_IP_MAX_SECONDS = 30
    settings.LOGIN_FAILURE_WINDOW_SECONDS = 900
    cache.clear()
    clock = Clock()
    monkeypatch.setattr(login_throttle, "_now", clock)
    yield clock
    cache.clear()


def attempt(password: str, *, username: str = "alice", ip: str = "10.0.0.1", path: str = "/login/"):
    client = Client(REMOTE_ADDR=ip)
    return client.post(path, {"username": username, "password": password}), client


def fail(n: int, **kwargs) -> list[int]:
    return [attempt("wrong-password", **kwargs)[0].status_code for _ in range(n)]


@pytest.mark.django_db
def test_after_five_failures_the_next_attempt_waits_and_no_password_is_checked(alice, clock):
    assert fail(5) == [200] * 5  # the form again, "did not match"
    with mock.patch.object(auth_forms, "authenticate", wraps=auth_forms.authenticate) as authenticate:
        response, client = attempt(PASSWORD)  # the right password, too soon
        assert authenticate.call_count == 0
    assert response.status_code == 429
    assert response["Retry-After"] == "1"
    assert WAIT_TEXT in response.content and b"Wait 1 seconds" in response.content
    assert "_auth_user_id" not in client.session
    # From another address too: the wait is the username's.
    assert attempt(PASSWORD, ip="10.0.0.2")[0].status_code == 429
    # A second later the right password logs in: a delay, never a lock.
    clock.now += 1
    assert attempt(PASSWORD)[0].status_code == 302


@pytest.mark.django_db
def test_the_wait_doubles_with_each_failure_up_to_its_cap(alice, clock, settings):
    settings.LOGIN_BACKOFF_MAX_SECONDS = 8
    fail(5)
    waits = []
    for _ in range(6):
        response = attempt("wrong-password")[0]
        waits.append(int(response["Retry-After"]))
        clock.now += waits[-1]
        assert attempt("wrong-password")[0].status_code == 200  # allowed, and counted
    assert waits == [1, 2, 4, 8, 8, 8]


@pytest.mark.django_db
def test_counts_are_forgotten_a_window_after_the_last_failure(alice, clock):
    fail(5)
    key = login_throttle._key("user", "alice")
    client = cache._cache.get_client(None, write=False)
    assert 890 <= client.ttl(cache.make_and_validate_key(key)) <= 900
    assert cache.touch(key, 1) and cache.touch(login_throttle._key("ip", "10.0.0.1"), 1)
    time.sleep(1.2)
    assert cache.get(key) is None
    assert fail(5) == [200] * 5  # five free failures again


@pytest.mark.django_db
def test_a_successful_login_resets_the_username_count(alice):
    assert fail(4) == [200] * 4
    assert attempt(PASSWORD)[0].status_code == 302
    assert fail(4) == [200] * 4  # counting starts again
    assert attempt(PASSWORD)[0].status_code == 302


@pytest.mark.django_db
def test_usernames_are_counted_separately_and_case_insensitively(alice, bob):
    fail(5, username="ALICE ")
    assert attempt(PASSWORD, username="alice")[0].status_code == 429
    assert attempt(PASSWORD, username="bob")[0].status_code == 302


@pytest.mark.django_db
def test_fifty_failed_usernames_from_one_address_only_slow_a_colleague(alice, bob, clock):
    """The finding as tried: 50 failed usernames from one address locked out a correct login for
    15 minutes. Now the address waits at most LOGIN_BACKOFF_IP_MAX_SECONDS."""
    for i in range(50):
        attempt("wrong-password", username=f"guess{i}")
        clock.now += 31  # the guesser waits out the address's backoff each time
    response = attempt(PASSWORD, username="bob")[0]
    if response.status_code == 429:
        assert int(response["Retry-After"]) <= 30
        clock.now += int(response["Retry-After"])
        response = attempt(PASSWORD, username="bob")[0]
    assert response.status_code == 302


@pytest.mark.django_db
def test_many_failures_from_one_address_make_it_wait(alice, bob, settings):
    settings.LOGIN_FAILURE_IP_LIMIT = 8  # 20 by default; fewer here to keep the test quick
    # Four failures on each of two usernames: neither reaches its limit, the address does.
    for name in ("u1", "u2"):
        assert fail(4, username=name) == [200] * 4
    response = attempt(PASSWORD, username="bob")[0]
    assert response.status_code == 429 and WAIT_TEXT in response.content
    assert attempt(PASSWORD, username="bob", ip="10.9.9.9")[0].status_code == 302


@pytest.mark.django_db
def test_the_admin_login_shares_the_throttle(charlie):
    fail(5, username="charlie", path="/admin/login/")
    response, client = attempt(PASSWORD, username="charlie", path="/admin/login/")
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session
    # And the app's login counts the same failures.
    assert attempt(PASSWORD, username="charlie")[0].status_code == 429


@pytest.mark.django_db
def test_the_admin_login_still_logs_staff_in(charlie):
    response, client = attempt(PASSWORD, username="charlie", path="/admin/login/")
    assert response.status_code == 302
    assert client.get("/admin/").status_code == 200


def production_settings() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "ALLOWED_HOSTS"}}
    env.update(
        SIGHTLINE_PRODUCTION="1",
        SECRET_KEY="p" * 60,
        ALLOWED_HOSTS="sightline.example.org",
        DEBUG="0",
        PSEUDONYM_KEY="k" * 50,
        REDIS_URL=os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0",
    )
    names = [
        "SESSION_COOKIE_SECURE",
        "SESSION_COOKIE_HTTPONLY",
        "CSRF_COOKIE_SECURE",
        "SESSION_COOKIE_SAMESITE",
        "CSRF_COOKIE_SAMESITE",
        "SECURE_SSL_REDIRECT",
        "SECURE_HSTS_SECONDS",
        "DEBUG",
    ]
    code = (
        "import json; from django.conf import settings as s; "
        f"print(json.dumps({{k: getattr(s, k) for k in {names!r}}}))"
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_production_cookies_are_secure_and_the_session_cookie_http_only():
    values = production_settings()
    assert values["SESSION_COOKIE_SECURE"] is True
    assert values["CSRF_COOKIE_SECURE"] is True
    assert values["SESSION_COOKIE_HTTPONLY"] is True
    assert values["SESSION_COOKIE_SAMESITE"] in ("Lax", "Strict")
    assert values["CSRF_COOKIE_SAMESITE"] in ("Lax", "Strict")
    assert values["SECURE_SSL_REDIRECT"] is True
    assert values["SECURE_HSTS_SECONDS"] >= 31536000
    assert values["DEBUG"] is False


@pytest.mark.django_db
def test_a_login_response_sets_secure_http_only_cookies_under_production_flags(alice, settings):
    """The same flags on the cookies a browser actually receives."""
    settings.SESSION_COOKIE_SECURE = True
    settings.CSRF_COOKIE_SECURE = True
    client = Client()
    page = client.get("/login/", secure=True)
    assert page.cookies["csrftoken"]["secure"]
    response = client.post("/login/", {"username": "alice", "password": PASSWORD}, secure=True)
    assert response.status_code == 302
    session = response.cookies[settings.SESSION_COOKIE_NAME]
    assert session["secure"] and session["httponly"]
