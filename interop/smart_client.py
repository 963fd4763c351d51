"""The client side of a SMART App Launch v2 EHR launch (authorization code + PKCE S256, OpenID Connect).

Django-free: every network call goes through an injected ``http_get``/``http_post`` so that the
views can pass an allow-listed fetcher (``AllowListedHttp``): nothing may fetch a URL an
administrator did not register, i.e. the registered ``iss`` (its ``/.well-known/smart-configuration``)
and the token endpoint and JWKS that configuration names, when they are on the iss's origin or an
origin registered for that EHR. The OAuth 2 client is authlib's (``OAuth2Client``), posting through
that fetcher rather than an HTTP library of its own. The ``iss`` of a launch request is attacker-controlled
until it has been matched against the registered EHRs; the caller does that before ``discover``.

The flow the views implement with these pieces::

    config = discover(iss, http.get)                            # GET /smart/launch?iss=..&launch=..
    url, state, verifier = authorization_url(config, client_id=.., redirect_uri=.., launch=.., iss=iss)
    # keep (state, verifier, iss) in the session, redirect the browser to url
    # GET /smart/callback?code=..&state=..
    code = callback_code(request.GET, expected_state=session_state)
    tokens = exchange_code(config, client_id=.., redirect_uri=.., code=code, code_verifier=verifier,
                           http_post=http.post)
    claims = validate_id_token(tokens["id_token"], jwks=fetch_jwks(config, http.get), issuer=config.issuer,
                               client_id=..)
    ctx = launch_context(tokens, claims)                        # ctx.patient, ctx.fhir_user, ...
"""

from __future__ import annotations

import hmac
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from authlib.common.security import generate_token
from authlib.common.urls import url_decode
from authlib.oauth2.base import OAuth2Error
from authlib.oauth2.client import OAuth2Client

from interop.ehr_http import (
    AllowListedHttp,
    HttpGet,
    HttpPost,
    HttpResponse,
    SmartLaunchError,
    smart_configuration_url,
    url_origin,
)
from interop.smart_id_token import ID_TOKEN_ALGORITHMS, validate_id_token

__all__ = [
    "AllowListedHttp",
    "HttpGet",
    "HttpPost",
    "HttpResponse",
    "ID_TOKEN_ALGORITHMS",
    "LaunchContext",
    "SmartConfiguration",
    "SmartLaunchError",
    "authorization_url",
    "callback_code",
    "discover",
    "exchange_code",
    "fetch_jwks",
    "launch_context",
    "smart_configuration_url",
    "validate_id_token",
]

DEFAULT_SCOPE = "launch openid fhirUser patient/*.rs"


@dataclass(frozen=True)
class SmartConfiguration:
    """The parts of ``{iss}/.well-known/smart-configuration`` this client relies on."""

    iss: str
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    code_challenge_methods_supported: tuple[str, ...]
    capabilities: tuple[str, ...]
    raw: dict[str, Any] = field(repr=False)
    #: Origins besides the iss's own an administrator registered for this EHR's endpoints.
    extra_origins: tuple[str, ...] = ()

    def endpoint_urls(self) -> frozenset[str]:
        """The URLs this configuration lets the client call (token, JWKS), for an allow-list: only on
        the registered iss's origin (scheme, host, port) or an origin registered for this EHR, so a
        configuration cannot point the server at a host no administrator named."""
        allowed = {url_origin(self.iss), *(url_origin(o) for o in self.extra_origins)}
        for key, url in (("token_endpoint", self.token_endpoint), ("jwks_uri", self.jwks_uri)):
            if url_origin(url) not in allowed:
                raise SmartLaunchError(
                    "endpoint_not_registered",
                    f"The SMART configuration's {key} ({url}) is not on the EHR's origin "
                    f"{url_origin(self.iss)}, and this app fetches nothing an administrator did not "
                    "register; if the EHR does serve it there, an administrator registers that origin: "
                    f"manage.py register_ehr ISS ... --smart-origin {url_origin(url)}.",
                    status=502,
                )
        return frozenset({self.token_endpoint, self.jwks_uri})


@dataclass(frozen=True)
class LaunchContext:
    """Who launched the app, for which patient: the token response plus the validated id_token."""

    patient: str | None
    encounter: str | None
    fhir_user: str
    sub: str
    expires_in: int | None
    scope: str
    access_token: str = field(repr=False)
    need_patient_banner: bool | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def fhir_user_reference(self) -> str:
        """``fhirUser`` as a relative reference ("Practitioner/123"), whether the EHR sent a URL or not."""
        parts = [p for p in urllib.parse.urlsplit(self.fhir_user).path.split("/") if p]
        return "/".join(parts[-2:]) if len(parts) >= 2 else self.fhir_user


def discover(iss: str, http_get: HttpGet, *, extra_origins: Sequence[str] = ()) -> SmartConfiguration:
    """Read and check the EHR's SMART configuration; PKCE S256 and OpenID Connect are required, and
    the token endpoint and JWKS must be on the iss's origin or one of ``extra_origins``."""
    _require_http_url(iss, "The launch's iss")
    url = smart_configuration_url(iss)
    doc = _json_object(_call(lambda: http_get(url), url), url, "smart-configuration")
    missing = [
        k for k in ("authorization_endpoint", "token_endpoint", "issuer", "jwks_uri") if not doc.get(k)
    ]
    if missing:
        raise SmartLaunchError(
            "smart_configuration_incomplete",
            f"The SMART configuration at {url} has no {', '.join(missing)}; this app needs them for an "
            "EHR launch with OpenID Connect, so the EHR's configuration must be fixed.",
            status=502,
        )
    for key in ("authorization_endpoint", "token_endpoint", "jwks_uri", "issuer"):
        _require_http_url(doc[key], f"The SMART configuration's {key}")
    methods = doc.get("code_challenge_methods_supported") or []
    if not isinstance(methods, list) or "S256" not in methods:
        raise SmartLaunchError(
            "pkce_not_supported",
            f"The SMART configuration at {url} does not list S256 in code_challenge_methods_supported; "
            "SMART App Launch v2 requires PKCE with S256 and this app will not launch without it.",
            status=502,
        )
    capabilities = doc.get("capabilities") or []
    config = SmartConfiguration(
        iss=iss,
        issuer=doc["issuer"],
        authorization_endpoint=doc["authorization_endpoint"],
        token_endpoint=doc["token_endpoint"],
        jwks_uri=doc["jwks_uri"],
        code_challenge_methods_supported=tuple(str(m) for m in methods),
        capabilities=tuple(str(c) for c in capabilities) if isinstance(capabilities, list) else (),
        raw=doc,
        extra_origins=tuple(extra_origins),
    )
    config.endpoint_urls()  # refused here, before the browser is sent anywhere
    return config


def authorization_url(
    config: SmartConfiguration,
    *,
    client_id: str,
    redirect_uri: str,
    launch: str,
    iss: str,
    scope: str = DEFAULT_SCOPE,
    nonce: str | None = None,
) -> tuple[str, str, str]:
    """The URL to send the browser to, and the ``state`` and PKCE ``code_verifier`` to keep server-side.

    Built by authlib's OAuth 2 client (PKCE S256). ``aud`` is the FHIR base URL (``iss``), as SMART
    v2 requires, so a token meant for another server cannot be obtained with this request.
    """
    code_verifier = generate_token(64)  # 43..128 characters of the unreserved set (RFC 7636 4.1)
    client = OAuth2Client(
        None, client_id=client_id, redirect_uri=redirect_uri, scope=scope, code_challenge_method="S256"
    )
    url, state = client.create_authorization_url(
        config.authorization_endpoint,
        state=generate_token(43),
        code_verifier=code_verifier,
        launch=launch,
        aud=iss,
        nonce=nonce,
    )
    return url, state, code_verifier


def callback_code(query: Mapping[str, str], *, expected_state: str | None) -> str:
    """The authorization code from the redirect back, after checking ``state`` in constant time."""
    if not expected_state:
        raise SmartLaunchError(
            "no_launch_in_progress",
            "There is no SMART launch in progress in this browser session; start again from the EHR.",
        )
    state = query.get("state") or ""
    if not hmac.compare_digest(state.encode(), expected_state.encode()):
        raise SmartLaunchError(
            "state_mismatch",
            "The state returned by the EHR does not match this session's launch; start again from the EHR.",
        )
    if query.get("error"):
        raise SmartLaunchError(
            "authorization_denied",
            f"The EHR refused the authorization ({query['error']}: "
            f"{query.get('error_description') or 'no description'}).",
            status=403,
        )
    code = query.get("code")
    if not code:
        raise SmartLaunchError("missing_code", "The EHR's redirect carries no authorization code.")
    return code


class _TokenEndpointResponse:
    """An allow-listed fetcher's response, as authlib's OAuth2Client reads one."""

    def __init__(self, response: HttpResponse, url: str) -> None:
        self.status_code = response.status
        self._response = response
        self._url = url

    def json(self) -> Any:
        return self._response.json()

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise SmartLaunchError(
                "token_exchange_failed",
                f"The EHR's token endpoint {self._url} answered HTTP {self.status_code} without a JSON "
                "error; start the launch again from the EHR.",
                status=502,
            )


class _AllowListedTransport:
    """The ``session`` authlib's OAuth2Client posts through: the injected (allow-listed) fetcher, so
    the client reaches nothing the allow-list does not hold, and never follows a redirect."""

    def __init__(self, http_post: HttpPost) -> None:
        self.http_post = http_post
        self.status: int | None = None

    def post(self, url: str, data=None, headers=None, auth=None, **kwargs) -> _TokenEndpointResponse:
        body = urllib.parse.urlencode(dict(data or {}))
        headers = dict(headers or {})
        if auth is not None:  # the client's authentication (client_id, or HTTP Basic with a secret)
            url, headers, body = auth.prepare("POST", url, headers, body)
        form = dict(url_decode(body))
        response = _call(lambda: self.http_post(url, form, headers), url, accept_errors=True)
        self.status = response.status
        return _TokenEndpointResponse(response, url)


def exchange_code(
    config: SmartConfiguration,
    *,
    client_id: str,
    redirect_uri: str,
    code: str,
    code_verifier: str,
    http_post: HttpPost,
    client_secret: str | None = None,
) -> dict[str, Any]:
    """Exchange the code and PKCE verifier at the token endpoint (authlib's OAuth2Client, over the
    injected fetcher) and return the checked token response.

    A public client sends ``client_id`` in the form; a confidential symmetric client
    (``client_secret``) authenticates with HTTP Basic, as SMART's client-confidential-symmetric says.
    """
    transport = _AllowListedTransport(http_post)
    client = OAuth2Client(
        transport,
        client_id=client_id,
        client_secret=client_secret,
        token_endpoint_auth_method="client_secret_basic" if client_secret else "none",
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
    )
    url = config.token_endpoint
    try:
        body = dict(
            client.fetch_token(
                url,
                grant_type="authorization_code",
                code=code,
                code_verifier=code_verifier,
                headers={"Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded"},
            )
        )
    except OAuth2Error as exc:
        raise SmartLaunchError(
            "token_exchange_failed",
            f"The EHR's token endpoint refused the authorization code with HTTP {transport.status} "
            f"({exc.error}: {exc.description or 'no description'}); start the launch again from the EHR.",
            status=502,
        ) from None
    except ValueError:
        raise SmartLaunchError(
            "token_exchange_failed", f"The token endpoint {url} did not answer a JSON object.", status=502
        ) from None
    return _token_response_check(body, status=transport.status)


def _token_response_check(body: dict[str, Any], *, status: int | None) -> dict[str, Any]:
    if status != 200:
        raise SmartLaunchError(
            "token_exchange_failed",
            f"The EHR's token endpoint answered HTTP {status}; start again from the EHR.",
            status=502,
        )
    if not isinstance(body.get("access_token"), str) or not body["access_token"]:
        raise SmartLaunchError("token_exchange_failed", "The token response has no access_token.", status=502)
    if str(body.get("token_type", "")).lower() != "bearer":
        raise SmartLaunchError(
            "token_exchange_failed",
            f"The token response's token_type is {body.get('token_type')!r}, not Bearer.",
            status=502,
        )
    return body


def fetch_jwks(config: SmartConfiguration, http_get: HttpGet) -> dict[str, Any]:
    """The EHR's published JWKS (``jwks_uri``), used to check its id_tokens."""
    url = config.jwks_uri
    doc = _json_object(_call(lambda: http_get(url), url), url, "JWKS")
    if not isinstance(doc.get("keys"), list):
        raise SmartLaunchError("invalid_jwks", f"The JWKS at {url} has no 'keys' list.", status=502)
    return doc


def launch_context(token_response: Mapping[str, Any], id_token_claims: Mapping[str, Any]) -> LaunchContext:
    """The launch context (patient, encounter, user, lifetime) out of a checked token response."""
    expires_in = token_response.get("expires_in")
    banner = token_response.get("need_patient_banner")
    return LaunchContext(
        patient=_opt_str(token_response.get("patient")),
        encounter=_opt_str(token_response.get("encounter")),
        fhir_user=str(id_token_claims.get("fhirUser") or ""),
        sub=str(id_token_claims.get("sub") or ""),
        expires_in=int(expires_in) if isinstance(expires_in, int | float) and expires_in >= 0 else None,
        scope=str(token_response.get("scope") or ""),
        access_token=str(token_response["access_token"]),
        need_patient_banner=banner if isinstance(banner, bool) else None,
        raw=dict(token_response),
    )


def _call(send: Callable[[], HttpResponse], url: str, *, accept_errors: bool = False) -> HttpResponse:
    try:
        response = send()
    except SmartLaunchError:
        raise
    except OSError as exc:
        raise SmartLaunchError(
            "ehr_unreachable", f"The EHR at {url} could not be reached ({exc}).", status=502
        ) from exc
    if not accept_errors and response.status != 200:
        raise SmartLaunchError(
            "ehr_http_error", f"The EHR answered HTTP {response.status} for {url}.", status=502
        )
    return response


def _json_object(response: HttpResponse, url: str, what: str) -> dict[str, Any]:
    try:
        doc = response.json()
    except (ValueError, UnicodeDecodeError) as exc:
        raise SmartLaunchError(
            "invalid_json", f"The {what} at {url} is not JSON ({exc}).", status=502
        ) from exc
    if not isinstance(doc, dict):
        raise SmartLaunchError("invalid_json", f"The {what} at {url} is not a JSON object.", status=502)
    return doc


def _require_http_url(value: Any, what: str) -> None:
    parts = urllib.parse.urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise SmartLaunchError("invalid_url", f"{what} ({value!r}) is not an absolute http(s) URL.")


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
