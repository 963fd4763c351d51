"""CDS Hooks JWT verification and the SMART EHR launch, against a fake EHR on a real socket.

The modules under test import no Django and these tests touch no database (the project's conftest
still loads Django's settings, so run them like the rest of the suite).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

import jwt
import pytest

from interop.ehr_jwt import EhrAuthError, VerifiedCall, bearer_token, verify_cds_jwt
from interop.smart_client import (
    AllowListedHttp,
    HttpResponse,
    SmartConfiguration,
    SmartLaunchError,
    authorization_url,
    callback_code,
    discover,
    exchange_code,
    fetch_jwks,
    launch_context,
    validate_id_token,
)
from tests.fixtures.fake_ehr import FakeEhr

SERVICE_URL = "https://sightline.test/cds-services/sepsis-risk"
CLIENT_ID = "sightline"
REDIRECT_URI = "https://sightline.test/smart/callback"
APP_LAUNCH_URL = "https://sightline.test/smart/launch"


class JtiStore:
    """An in-memory stand-in for the database table of seen (iss, jti) pairs."""

    def __init__(self) -> None:
        self.seen: dict[tuple[str, str], float] = {}

    def __call__(self, iss: str, jti: str, exp: float) -> bool:
        if (iss, jti) in self.seen:
            return True
        self.seen[(iss, jti)] = exp
        return False


@pytest.fixture
def verify(fake_ehr: FakeEhr):
    """verify_cds_jwt with the fake EHR registered (its JWKS fetched over HTTP, as an admin would)."""
    with urllib.request.urlopen(fake_ehr.jwks_url, timeout=5) as resp:  # noqa: S310 - local fake EHR
        registered = {fake_ehr.iss: json.load(resp)}
    store = JtiStore()

    def _verify(token: str, **kwargs) -> VerifiedCall:
        kwargs.setdefault("audience", SERVICE_URL)
        return verify_cds_jwt(token, jwks_for_issuer=registered.get, seen_jti=store, **kwargs)

    _verify.store = store  # type: ignore[attr-defined]
    _verify.registered = registered  # type: ignore[attr-defined]
    return _verify


# -- CDS Hooks JWT: the good ones ------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["ES384", "RS384"])
def test_valid_token_verifies(fake_ehr: FakeEhr, verify, alg: str) -> None:
    token = fake_ehr.cds_jwt(SERVICE_URL, alg=alg, jti=f"call-{alg}", extra={"tenant": "icu-north"})
    call = verify(bearer_token(f"Bearer {token}"))
    assert (call.iss, call.jti, call.alg, call.sub) == (fake_ehr.iss, f"call-{alg}", alg, "sightline")
    assert call.kid == fake_ehr.keys[alg].kid
    assert call.claims["tenant"] == "icu-north"
    assert verify.store.seen == {(fake_ehr.iss, f"call-{alg}"): float(call.exp)}


def test_audience_may_be_a_list_and_kid_may_be_absent(fake_ehr: FakeEhr, verify) -> None:
    # The JWKS holds exactly one EC key, so a token without kid still finds its key.
    call = verify(fake_ehr.cds_jwt([SERVICE_URL], alg="ES384", kid=None))
    assert call.kid is None


# -- CDS Hooks JWT: every fault is refused with its own sentence --------------------------------------


def _faults(ehr: FakeEhr) -> dict[str, tuple[str, str]]:
    """fault name -> (token, expected error code)."""
    return {
        "wrong key": (ehr.cds_jwt(SERVICE_URL, key="other"), "bad_signature"),
        "alg none": (ehr.alg_none_jwt(SERVICE_URL), "unsigned_token"),
        "HS256 with the public key as secret": (ehr.hs256_public_key_jwt(SERVICE_URL), "symmetric_algorithm"),
        "expired": (ehr.cds_jwt(SERVICE_URL, iat_offset=-600, exp_in=300), "expired_token"),
        "wrong aud": (ehr.cds_jwt("https://sightline.test/cds-services/other"), "wrong_audience"),
        "unknown iss": (ehr.cds_jwt(SERVICE_URL, iss="https://ehr.unknown.example/fhir"), "unknown_issuer"),
        "iat far in the future": (ehr.cds_jwt(SERVICE_URL, iat_offset=3600), "token_not_yet_valid"),
        "missing jti": (ehr.cds_jwt(SERVICE_URL, omit=("jti",)), "missing_claim"),
        "lifetime too long": (ehr.cds_jwt(SERVICE_URL, exp_in=3600), "lifetime_too_long"),
        "unknown kid": (ehr.cds_jwt(SERVICE_URL, kid="rotated-away"), "key_not_found"),
        "ES384 header on the RSA key": (
            ehr.cds_jwt(SERVICE_URL, alg="ES384", kid=ehr.keys["RS384"].kid),
            "algorithm_key_mismatch",
        ),
        "RS256 not allowed": (ehr.cds_jwt(SERVICE_URL, alg="RS256"), "algorithm_not_allowed"),
        "not a JWT": ("not-a-jwt", "malformed_token"),
    }


def test_each_fault_is_refused_with_a_distinct_sentence(fake_ehr: FakeEhr, verify) -> None:
    details: dict[str, str] = {}
    for fault, (token, code) in _faults(fake_ehr).items():
        with pytest.raises(EhrAuthError) as caught:
            verify(token)
        assert caught.value.code == code, f"{fault}: {caught.value}"
        assert caught.value.as_error_body()["error"] == code
        details[fault] = caught.value.detail
    assert len(set(details.values())) == len(details), details
    assert verify.store.seen == {}, "a refused token must not be recorded as seen"
    assert "https://ehr.unknown.example/fhir is not a registered EHR" in details["unknown iss"]
    assert "'jti'" in details["missing jti"]


def test_replayed_jti_is_refused(fake_ehr: FakeEhr, verify) -> None:
    token = fake_ehr.cds_jwt(SERVICE_URL, jti="once")
    verify(token)
    with pytest.raises(EhrAuthError, match="already used") as caught:
        verify(token)
    assert caught.value.code == "replayed_token"
    # The same jti in a freshly signed token is a replay too.
    with pytest.raises(EhrAuthError, match="already used"):
        verify(fake_ehr.cds_jwt(SERVICE_URL, alg="RS384", jti="once"))


def test_hs256_attack_fails_even_if_hs256_were_allowed(fake_ehr: FakeEhr, verify) -> None:
    # A misconfigured allow-list cannot switch symmetric algorithms on.
    with pytest.raises(EhrAuthError) as caught:
        verify(fake_ehr.hs256_public_key_jwt(SERVICE_URL), algorithms=["HS256", "RS384"])
    assert caught.value.code == "symmetric_algorithm"


def test_rs256_can_be_enabled_for_one_ehr(fake_ehr: FakeEhr, verify) -> None:
    assert verify(fake_ehr.cds_jwt(SERVICE_URL, alg="RS256"), algorithms=["RS256", "RS384"]).alg == "RS256"


def test_bearer_header_is_required() -> None:
    for header in (None, "", "Basic abc", "Bearer "):
        with pytest.raises(EhrAuthError) as caught:
            bearer_token(header)
        assert caught.value.code == "missing_token"


# -- SMART App Launch v2 against the fake EHR -----------------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        return None


def follow_authorize(url: str) -> dict[str, str]:
    """What the browser does at /authorize: the EHR auto-approves and redirects; return the query."""
    opener = urllib.request.build_opener(_NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as caught:
        opener.open(url, timeout=5)
    assert caught.value.code == 302
    location = caught.value.headers["Location"]
    assert location.startswith(REDIRECT_URI + "?")
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))


def start_launch(ehr: FakeEhr, **kwargs) -> tuple[SmartConfiguration, AllowListedHttp, str, str, str]:
    launch_url = ehr.launch_url(APP_LAUNCH_URL, "pat-42", "Practitioner/123", encounter_id="enc-7")
    params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(launch_url).query))
    iss, launch = params["iss"], params["launch"]
    http = AllowListedHttp.for_issuer(iss)
    config = discover(iss, http.get)
    http = http.allowing(*config.endpoint_urls())
    url, state, verifier = authorization_url(
        config, client_id=CLIENT_ID, redirect_uri=REDIRECT_URI, launch=launch, iss=iss, **kwargs
    )
    return config, http, url, state, verifier


def test_ehr_launch_end_to_end(fake_ehr: FakeEhr) -> None:
    fake_ehr.register_client(CLIENT_ID, [REDIRECT_URI])
    config, http, url, state, verifier = start_launch(fake_ehr, nonce="n-1")
    assert config.issuer == fake_ehr.iss and "S256" in config.code_challenge_methods_supported

    code = callback_code(follow_authorize(url), expected_state=state)
    tokens = exchange_code(
        config,
        client_id=CLIENT_ID,
        redirect_uri=REDIRECT_URI,
        code=code,
        code_verifier=verifier,
        http_post=http.post,
    )
    claims = validate_id_token(
        tokens["id_token"],
        jwks=fetch_jwks(config, http.get),
        issuer=config.issuer,
        client_id=CLIENT_ID,
        nonce="n-1",
    )
    ctx = launch_context(tokens, claims)
    assert (ctx.patient, ctx.encounter, ctx.expires_in) == ("pat-42", "enc-7", 3600)
    assert ctx.fhir_user == f"{fake_ehr.iss}/Practitioner/123"
    assert ctx.fhir_user_reference == "Practitioner/123"
    assert ctx.sub and "launch" in ctx.scope.split()

    # What the EHR saw: PKCE S256 and aud on /authorize, the verifier (not the challenge) on /token.
    authorize = fake_ehr.requests_to("/authorize")[0].query
    assert authorize["code_challenge_method"] == "S256" and authorize["aud"] == fake_ehr.iss
    assert verifier not in json.dumps(authorize)
    token_form = dict(urllib.parse.parse_qsl(fake_ehr.requests_to("/token")[0].body.decode()))
    assert token_form["code_verifier"] == verifier and token_form["client_id"] == CLIENT_ID

    # The access token reads the launch patient, and only that one.
    req = urllib.request.Request(  # noqa: S310 - local fake EHR
        f"{fake_ehr.iss}/Patient/pat-42", headers={"Authorization": f"Bearer {ctx.access_token}"}
    )
    with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 - local fake EHR
        assert json.load(resp)["id"] == "pat-42"


def test_confidential_client_uses_basic_auth(fake_ehr: FakeEhr) -> None:
    fake_ehr.register_client(CLIENT_ID, [REDIRECT_URI], client_secret="s3cret:with/odd chars")
    config, http, url, state, verifier = start_launch(fake_ehr)
    code = callback_code(follow_authorize(url), expected_state=state)
    tokens = exchange_code(
        config,
        client_id=CLIENT_ID,
        redirect_uri=REDIRECT_URI,
        code=code,
        code_verifier=verifier,
        http_post=http.post,
        client_secret="s3cret:with/odd chars",
    )
    assert tokens["patient"] == "pat-42"
    assert fake_ehr.requests_to("/token")[0].headers["Authorization"].startswith("Basic ")


def test_wrong_code_verifier_is_refused_by_the_token_endpoint(fake_ehr: FakeEhr) -> None:
    fake_ehr.register_client(CLIENT_ID, [REDIRECT_URI])
    config, http, url, state, verifier = start_launch(fake_ehr)
    code = callback_code(follow_authorize(url), expected_state=state)
    with pytest.raises(SmartLaunchError, match="invalid_grant") as caught:
        exchange_code(
            config,
            client_id=CLIENT_ID,
            redirect_uri=REDIRECT_URI,
            code=code,
            code_verifier=verifier[::-1],
            http_post=http.post,
        )
    assert caught.value.code == "token_exchange_failed" and "HTTP 400" in caught.value.detail
    # The code is spent by the failed attempt: the right verifier no longer works either.
    with pytest.raises(SmartLaunchError, match="invalid_grant"):
        exchange_code(
            config,
            client_id=CLIENT_ID,
            redirect_uri=REDIRECT_URI,
            code=code,
            code_verifier=verifier,
            http_post=http.post,
        )


def test_the_oauth_client_reaches_only_allow_listed_urls(fake_ehr: FakeEhr) -> None:
    """authlib's client posts through the allow-listed fetcher: a token endpoint it was not given
    is refused before any request leaves."""
    fake_ehr.register_client(CLIENT_ID, [REDIRECT_URI])
    config, _http, url, state, verifier = start_launch(fake_ehr)
    code = callback_code(follow_authorize(url), expected_state=state)
    with pytest.raises(SmartLaunchError) as caught:
        exchange_code(
            config,
            client_id=CLIENT_ID,
            redirect_uri=REDIRECT_URI,
            code=code,
            code_verifier=verifier,
            http_post=AllowListedHttp.for_issuer(fake_ehr.iss).post,  # the discovery URL only
        )
    assert caught.value.code == "url_not_registered"
    assert fake_ehr.requests_to("/token") == []


def test_endpoints_must_be_on_the_iss_origin_or_a_registered_one(fake_ehr: FakeEhr) -> None:
    fake_ehr.smart_configuration_overrides = {"jwks_uri": "https://keys.example.org/jwks.json"}
    http = AllowListedHttp.for_issuer(fake_ehr.iss)
    with pytest.raises(SmartLaunchError) as caught:
        discover(fake_ehr.iss, http.get)
    assert caught.value.code == "endpoint_not_registered" and "jwks_uri" in caught.value.detail
    config = discover(fake_ehr.iss, http.get, extra_origins=["https://KEYS.example.org:443"])
    assert "https://keys.example.org/jwks.json" in config.endpoint_urls()


def test_id_token_signed_by_another_key_is_refused(fake_ehr: FakeEhr) -> None:
    fake_ehr.register_client(CLIENT_ID, [REDIRECT_URI])
    fake_ehr.id_token_key = "other"
    config, http, url, state, verifier = start_launch(fake_ehr)
    code = callback_code(follow_authorize(url), expected_state=state)
    tokens = exchange_code(
        config,
        client_id=CLIENT_ID,
        redirect_uri=REDIRECT_URI,
        code=code,
        code_verifier=verifier,
        http_post=http.post,
    )
    with pytest.raises(SmartLaunchError, match="does not verify") as caught:
        validate_id_token(
            tokens["id_token"], jwks=fetch_jwks(config, http.get), issuer=config.issuer, client_id=CLIENT_ID
        )
    assert caught.value.code == "invalid_id_token"


def test_id_token_checks(fake_ehr: FakeEhr) -> None:
    jwks = fake_ehr.jwks()

    def check(token: str, **kw) -> dict:
        return validate_id_token(token, jwks=jwks, issuer=fake_ehr.iss, client_id=CLIENT_ID, **kw)

    assert check(fake_ehr.mint_id_token(CLIENT_ID))["fhirUser"].endswith("/Practitioner/123")
    faults = {
        "another client": (fake_ehr.mint_id_token("someone-else"), {}, "another client"),
        "nonce": (fake_ehr.mint_id_token(CLIENT_ID, nonce="a"), {"nonce": "b"}, "nonce"),
        "no fhirUser": (fake_ehr.mint_id_token(CLIENT_ID, extra={"fhirUser": None}), {}, "fhirUser"),
        "expired": (fake_ehr.mint_id_token(CLIENT_ID, extra={"exp": 1_000_000}), {}, "expired"),
        "HS256": (
            jwt.encode({"iss": fake_ehr.iss, "aud": CLIENT_ID}, "k" * 32, algorithm="HS256"),
            {},
            "HS256",
        ),
    }
    for name, (token, kw, words) in faults.items():
        with pytest.raises(SmartLaunchError, match=words):
            check(token, **kw)
        assert name


def test_callback_state_must_match(fake_ehr: FakeEhr) -> None:
    fake_ehr.register_client(CLIENT_ID, [REDIRECT_URI])
    _, _, url, state, _ = start_launch(fake_ehr)
    query = follow_authorize(url)
    with pytest.raises(SmartLaunchError) as caught:
        callback_code({**query, "state": "forged"}, expected_state=state)
    assert caught.value.code == "state_mismatch"
    with pytest.raises(SmartLaunchError) as caught:
        callback_code(query, expected_state=None)
    assert caught.value.code == "no_launch_in_progress"


def test_denied_authorization_is_reported(fake_ehr: FakeEhr) -> None:
    fake_ehr.register_client(CLIENT_ID, [REDIRECT_URI])
    fake_ehr.approve = False
    _, _, url, state, _ = start_launch(fake_ehr)
    with pytest.raises(SmartLaunchError, match="access_denied") as caught:
        callback_code(follow_authorize(url), expected_state=state)
    assert caught.value.status == 403


def test_allow_listed_fetcher_refuses_unregistered_urls(fake_ehr: FakeEhr) -> None:
    http = AllowListedHttp.for_issuer(fake_ehr.iss)
    with pytest.raises(SmartLaunchError) as caught:
        http.get(f"{fake_ehr.base_url}/jwks.json")  # not yet named by a discovered configuration
    assert caught.value.code == "url_not_registered"
    with pytest.raises(SmartLaunchError, match="url_not_registered"):
        discover("http://169.254.169.254/latest", http.get)
    assert fake_ehr.requests == []


def test_discovery_requires_s256_and_openid() -> None:
    base = {
        "issuer": "https://ehr.example/fhir",
        "authorization_endpoint": "https://ehr.example/authorize",
        "token_endpoint": "https://ehr.example/token",
        "jwks_uri": "https://ehr.example/jwks",
    }
    cases = {
        "pkce_not_supported": {**base, "code_challenge_methods_supported": ["plain"]},
        "smart_configuration_incomplete": {"authorization_endpoint": base["authorization_endpoint"]},
        "invalid_url": {
            **base,
            "token_endpoint": "file:///etc/passwd",
            "code_challenge_methods_supported": ["S256"],
        },
    }
    for code, doc in cases.items():
        with pytest.raises(SmartLaunchError) as caught:
            discover(
                "https://ehr.example/fhir", lambda url, doc=doc: HttpResponse(200, json.dumps(doc).encode())
            )
        assert caught.value.code == code
