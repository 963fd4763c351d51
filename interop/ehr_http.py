"""HTTP to an EHR: what a fetcher returns, the error a launch stops with, and a fetcher that only
reaches URLs an administrator registered (the SMART configuration of a registered ``iss`` and the
endpoints it names). Django-free; used by interop.smart_client and by register_ehr's JWKS fetch.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: Responses larger than this are refused (a smart-configuration or token response is a few KB).
MAX_RESPONSE_BYTES = 1024 * 1024


class SmartLaunchError(Exception):
    """A launch that cannot go on; ``detail`` is a sentence an administrator or integrator can act on."""

    def __init__(self, code: str, detail: str, status: int = 400) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.status = status

    def as_error_body(self) -> dict[str, Any]:
        """The section-7 error body of the contract."""
        return {"error": self.code, "detail": self.detail, "fields": {}}


@dataclass(frozen=True)
class HttpResponse:
    """What an injected fetcher returns: enough for JSON endpoints, nothing transport-specific."""

    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


HttpGet = Callable[[str], HttpResponse]
#: ``http_post(url, form_fields, headers)``; the body is sent application/x-www-form-urlencoded.
HttpPost = Callable[[str, Mapping[str, str], Mapping[str, str]], HttpResponse]


def smart_configuration_url(iss: str) -> str:
    """The discovery document's URL for a FHIR base URL (trailing slashes on iss are ignored)."""
    return iss.rstrip("/") + "/.well-known/smart-configuration"


class AllowListedHttp:
    """A urllib fetcher that refuses every URL not in its allow-list, and never follows redirects.

    Build it from what an administrator registered: ``AllowListedHttp.for_issuer(iss)`` may fetch the
    discovery document only; ``.allowing(*config.endpoint_urls())`` adds the endpoints it names.
    A redirect is returned as a response (3xx), not followed, so the allow-list cannot be escaped.
    """

    def __init__(self, allowed: Iterable[str], *, timeout: float = 5.0) -> None:
        self.allowed = frozenset(_normalise(u) for u in allowed)
        self.timeout = timeout
        self._opener = urllib.request.build_opener(_NoRedirect)

    @classmethod
    def for_issuer(cls, iss: str, *, timeout: float = 5.0) -> AllowListedHttp:
        return cls([smart_configuration_url(iss)], timeout=timeout)

    def allowing(self, *urls: str) -> AllowListedHttp:
        return AllowListedHttp([*self.allowed, *urls], timeout=self.timeout)

    def get(self, url: str) -> HttpResponse:
        checked = self._check(url)
        return self._send(urllib.request.Request(checked, headers={"Accept": "application/json"}))  # noqa: S310

    def post(self, url: str, form: Mapping[str, str], headers: Mapping[str, str]) -> HttpResponse:
        data = urllib.parse.urlencode(dict(form)).encode()
        all_headers = {"Content-Type": "application/x-www-form-urlencoded", **dict(headers)}
        checked = self._check(url)
        return self._send(urllib.request.Request(checked, data=data, headers=all_headers))  # noqa: S310

    def _check(self, url: str) -> str:
        """Only allow-listed http(s) URLs get through (this is what makes the S310 noqa above safe)."""
        if urllib.parse.urlsplit(url).scheme not in ("http", "https") or _normalise(url) not in self.allowed:
            raise SmartLaunchError(
                "url_not_registered",
                f"This app will not fetch {url}: it is neither a registered EHR's SMART configuration nor "
                "an endpoint that configuration names.",
                status=403,
            )
        return url

    def _send(self, request: urllib.request.Request) -> HttpResponse:
        try:
            with self._opener.open(request, timeout=self.timeout) as resp:
                return HttpResponse(resp.status, _read_capped(resp), dict(resp.headers.items()))
        except urllib.error.HTTPError as exc:
            return HttpResponse(exc.code, _read_capped(exc), dict(exc.headers.items()))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        return None


def _read_capped(resp: Any) -> bytes:
    body = resp.read(MAX_RESPONSE_BYTES + 1)
    if len(body) > MAX_RESPONSE_BYTES:
        raise SmartLaunchError(
            "response_too_large", f"The EHR's response is larger than {MAX_RESPONSE_BYTES} bytes.", status=502
        )
    return body


def url_origin(url: str) -> str:
    """scheme://host:port of a URL, lower-cased, with the scheme's default port made explicit."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or {"http": 80, "https": 443}.get(scheme)
    except ValueError:
        port = None
    return f"{scheme}://{(parts.hostname or '').lower()}:{port}"


def _normalise(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path, parts.query, ""))
