"""Login throttling (clinician_ui.login_throttle) and the session and CSRF cookies in production."""

import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from unittest import mock

import pytest
from django.contrib.auth import forms as auth_forms
from django.core.cache import cache
from django.db import connections
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
    settings.LOGIN_FAILURE_USER_LIMIT = 20
    settings.LOGIN_BACKOFF_USER_MAX_SECONDS = 50
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
    key = login_throttle._key("user-ip", "alice\x0010.0.0.1")
    client = cache._cache.get_client(None, write=False)
    assert 890 <= client.ttl(cache.make_and_validate_key(key)) <= 900
    assert cache.get(key) == 5
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
def test_the_owner_at_another_address_is_not_delayed_by_a_guessers_failures(alice, clock):
    """Pen test finding 8 (audit of issue 15): the username's backoff applied from any address, up
    to 300 s, so one wrong password every 5 minutes kept the owner out for good. Now it is the
    guesser's address that waits."""
    for _ in range(12):  # a guesser at 10.6.6.6 waits out every backoff, for over half an hour
        response = attempt("wrong-password", ip="10.6.6.6")[0]
        if response.status_code == 429:
            clock.now += int(response["Retry-After"])
            response = attempt("wrong-password", ip="10.6.6.6")[0]
        assert response.status_code == 200
        # Meanwhile the owner, at the ward's workstation, signs in at once, every time.
        owner, client = attempt(PASSWORD, ip="10.0.0.7")
        assert owner.status_code == 302 and "_auth_user_id" in client.session
    refused = attempt("wrong-password", ip="10.6.6.6")[0]
    assert refused.status_code == 429 and int(refused["Retry-After"]) == 128


@pytest.mark.django_db
def test_guesses_spread_over_many_addresses_are_slowed_to_100_an_hour_and_the_owner_by_seconds(alice, clock):
    """A username from anywhere: after LOGIN_FAILURE_USER_LIMIT failures each attempt waits up to
    LOGIN_BACKOFF_USER_MAX_SECONDS (50), so at most ~100 failures an hour reach one account (ASVS
    2.2.1), and the owner is slowed, never kept out."""
    start, admitted, address = clock.now, 0, 0
    with mock.patch.object(auth_forms, "authenticate", wraps=auth_forms.authenticate) as authenticate:
        while clock.now < start + 3600:
            address += 1  # a fresh address for every guess
            response = attempt("wrong-password", ip=f"10.{address // 250}.{address % 250}.9")[0]
            if response.status_code == 429:
                assert int(response["Retry-After"]) <= 50
                clock.now += int(response["Retry-After"])
            else:
                admitted += 1
        assert authenticate.call_count == admitted
    assert 80 <= admitted <= 100
    owner = attempt(PASSWORD, ip="10.0.0.7")[0]
    if owner.status_code == 429:
        assert int(owner["Retry-After"]) <= 50
        clock.now += int(owner["Retry-After"])
        owner = attempt(PASSWORD, ip="10.0.0.7")[0]
    assert owner.status_code == 302


@pytest.mark.django_db(transaction=True)
def test_parallel_wrong_attempts_are_each_counted_and_none_skips_the_backoff(alice):
    """Checked before any failure was recorded, with a get-then-set, 10 guesses sent at once were
    all checked and some lost their count. Now each attempt is counted atomically first: 5 (the
    free failures) are checked, the others must wait, and the count says 5."""
    barrier = threading.Barrier(10)

    def guess(_) -> int:
        client = Client(REMOTE_ADDR="10.0.0.1")
        barrier.wait()
        try:
            return client.post("/login/", {"username": "alice", "password": "wrong"}).status_code
        finally:
            connections.close_all()

    with (
        mock.patch.object(auth_forms, "authenticate", wraps=auth_forms.authenticate) as authenticate,
        ThreadPoolExecutor(max_workers=10) as pool,
    ):
        statuses = sorted(pool.map(guess, range(10)))
    assert statuses == [200] * 5 + [429] * 5
    assert authenticate.call_count == 5
    assert cache.get(login_throttle._key("user-ip", "alice\x0010.0.0.1")) == 5
    assert cache.get(login_throttle._key("user", "alice")) == 5
    assert cache.get(login_throttle._key("ip", "10.0.0.1")) == 5
    assert attempt(PASSWORD)[0].status_code == 429  # the next one waits too


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
