"""The client's address behind a trusted proxy (issue 15, finding 8): the forwarded header counts
only when the request comes from a configured proxy, and then only its right-most untrusted hop."""

import pytest
from django.test import RequestFactory

from patients.access import client_ip


def _request(remote: str, forwarded: str | None = None):
    extra = {"HTTP_X_FORWARDED_FOR": forwarded} if forwarded is not None else {}
    return RequestFactory().get("/", REMOTE_ADDR=remote, **extra)


def test_without_a_trusted_proxy_the_header_is_ignored(settings):
    settings.TRUSTED_PROXIES = []
    assert client_ip(_request("203.0.113.7", "198.51.100.1")) == "203.0.113.7"


@pytest.mark.parametrize(
    ("remote", "forwarded", "expected"),
    [
        # nginx (trusted) appends the address it saw: the client.
        ("172.18.0.5", "198.51.100.1", "198.51.100.1"),
        # A client that writes its own header cannot choose its address: the right-most hop is
        # the one the proxy added.
        ("172.18.0.5", "10.9.9.9, 198.51.100.1", "198.51.100.1"),
        # Two trusted proxies in a row (a load balancer, then nginx).
        ("172.18.0.5", "198.51.100.1, 172.18.0.9", "198.51.100.1"),
        # A request that did not come through the proxy keeps its own address.
        ("203.0.113.7", "198.51.100.1", "203.0.113.7"),
        # No header, or garbage in it: the proxy's address, never the garbage.
        ("172.18.0.5", None, "172.18.0.5"),
        ("172.18.0.5", "not-an-ip", "172.18.0.5"),
    ],
)
def test_behind_a_trusted_proxy_the_right_most_untrusted_hop_is_the_client(
    settings, remote, forwarded, expected
):
    settings.TRUSTED_PROXIES = ["172.16.0.0/12"]
    settings.CLIENT_IP_HEADER = "X-Forwarded-For"
    assert client_ip(_request(remote, forwarded)) == expected


def test_another_header_can_be_configured(settings):
    settings.TRUSTED_PROXIES = ["127.0.0.1"]
    settings.CLIENT_IP_HEADER = "X-Real-IP"
    request = RequestFactory().get("/", REMOTE_ADDR="127.0.0.1", HTTP_X_REAL_IP="198.51.100.4")
    assert client_ip(request) == "198.51.100.4"


@pytest.mark.django_db
def test_the_login_throttle_counts_the_forwarded_client(client, settings, alice):
    """Behind the proxy every client shared its address, so one guesser paused everyone's logins."""
    from django.core.cache import cache

    cache.clear()
    settings.TRUSTED_PROXIES = ["172.16.0.0/12"]
    settings.LOGIN_FAILURE_IP_LIMIT = 3
    for i in range(3):
        client.post(
            "/login/", {"username": f"guess{i}", "password": "x"},
            REMOTE_ADDR="172.18.0.5", HTTP_X_FORWARDED_FOR="198.51.100.66",
        )  # fmt: skip
    from tests.fixtures.people import PASSWORD

    innocent = client.post(
        "/login/", {"username": "alice", "password": PASSWORD},
        REMOTE_ADDR="172.18.0.5", HTTP_X_FORWARDED_FOR="198.51.100.10",
    )  # fmt: skip
    assert innocent.status_code == 302
    cache.clear()


def _anonymous_throttled(remote: str, forwarded: str) -> bool:
    """Whether the API's throttle lets one more anonymous request through (False: 429)."""
    from rest_framework.request import Request
    from rest_framework.test import APIRequestFactory

    from sightline.throttling import CallerRateThrottle

    request = Request(
        APIRequestFactory().get("/api/v1/x/", REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR=forwarded)
    )
    request.user = None
    return CallerRateThrottle().allow_request(request, view=None)


@pytest.mark.django_db
def test_a_spoofed_forwarded_header_gets_no_fresh_throttle_bucket(settings, monkeypatch):
    """DRF's get_ident believed any X-Forwarded-For: an anonymous caller writing a new address in
    it each time was never throttled. The API's throttle asks client_ip (TRUSTED_PROXIES) instead."""
    from django.core.cache import cache
    from rest_framework.throttling import SimpleRateThrottle

    cache.clear()
    monkeypatch.setitem(SimpleRateThrottle.THROTTLE_RATES, "anon", "2/min")
    settings.TRUSTED_PROXIES = ["172.16.0.0/12"]
    allowed = [_anonymous_throttled("203.0.113.7", f"198.51.100.{i}") for i in range(4)]
    assert allowed == [True, True, False, False]
    # Through the trusted proxy, two clients are two buckets.
    assert _anonymous_throttled("172.18.0.5", "198.51.100.20")
    assert _anonymous_throttled("172.18.0.5", "198.51.100.21")
    cache.clear()
