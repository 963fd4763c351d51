"""Verification of the JWT an EHR sends on every CDS Hooks 2.0 call (``Authorization: Bearer <jwt>``).

Django-free on purpose: the views pass in two callables that the database backs
(``jwks_for_issuer`` for the registered EHRs, ``seen_jti`` for replay protection), so this module
can be tested against a fake EHR without a database and reused by any transport.

Algorithm policy (decided here, see ``DEFAULT_ALGORITHMS``): CDS Hooks 2.0 names ES384 and RS384 as
the algorithms a CDS Service must support, so those two are accepted by default. An administrator
may widen the list per EHR only with an explicit opt-in (``register_ehr --allow-other-asymmetric``,
e.g. RS256 for an EHR that cannot sign with SHA-384), and only within ``ASYMMETRIC_ALGORITHMS``:
``none`` and every HMAC algorithm (HS*) are refused before any key is looked at, which is what
defeats the "HS256 signed with the public key as the secret" attack.

Keys come only from the JWKS an administrator registered for the issuer. A ``jku`` header in the
token is ignored, never fetched: fetching a URL the token names would let anyone choose the key.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jwt

#: What CDS Hooks 2.0 requires a CDS Service to support; the default allow-list.
DEFAULT_ALGORITHMS: tuple[str, ...] = ("ES384", "RS384")

#: Every algorithm that may ever be enabled, with the JWK key type (and EC curve) it needs.
ASYMMETRIC_ALGORITHMS: Mapping[str, tuple[str, str | None]] = {
    "RS256": ("RSA", None),
    "RS384": ("RSA", None),
    "RS512": ("RSA", None),
    "PS256": ("RSA", None),
    "PS384": ("RSA", None),
    "PS512": ("RSA", None),
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "ES512": ("EC", "P-521"),
}

#: Claims the CDS Hooks 2.0 JWT must carry.
REQUIRED_CLAIMS: tuple[str, ...] = ("iss", "aud", "exp", "iat", "jti")

#: A bearer token longer than this is refused before it is parsed (a JWT with a few claims is < 2 KB).
MAX_TOKEN_BYTES = 8192


class EhrAuthError(Exception):
    """A CDS Hooks call whose JWT cannot be trusted; the view answers 401 with ``as_error_body()``.

    ``code`` is stable and machine-readable; ``detail`` is a sentence the EHR's integrator can act on.
    """

    status = 401

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail

    def as_error_body(self) -> dict[str, Any]:
        """The section-7 error body of the contract."""
        return {"error": self.code, "detail": self.detail, "fields": {}}


@dataclass(frozen=True)
class VerifiedCall:
    """What a verified token says about the caller; ``claims`` holds everything (e.g. ``tenant``)."""

    iss: str
    sub: str | None
    jti: str
    exp: int
    kid: str | None
    alg: str
    claims: dict[str, Any] = field(repr=False)


def bearer_token(authorization_header: str | None) -> str:
    """The token out of an ``Authorization`` header value, or EhrAuthError saying what was wrong."""
    if not authorization_header:
        raise EhrAuthError(
            "missing_token",
            "The request has no Authorization header; a CDS Hooks call must carry 'Authorization: "
            "Bearer <JWT>' signed by a registered EHR.",
        )
    scheme, _, token = authorization_header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise EhrAuthError(
            "missing_token",
            "The Authorization header is not of the form 'Bearer <JWT>'.",
        )
    return token.strip()


def _jwks_keys(jwks: Any, owner: str) -> list[Mapping]:
    keys = jwks.get("keys") if isinstance(jwks, Mapping) else None
    if not isinstance(keys, list) or not all(isinstance(k, Mapping) for k in keys):
        raise EhrAuthError(
            "invalid_jwks",
            f"The JWKS registered for {owner} is not a JSON object with a 'keys' list; an administrator "
            "must register it again.",
        )
    return keys


def _signing_key(signing: list[Mapping], *, kid: str | None, kty: str, owner: str) -> Mapping:
    """The one signing key with id `kid`, or without a kid the one signing key of type `kty`."""
    if kid is not None:
        matches = [k for k in signing if k.get("kid") == kid]
        if not matches:
            raise EhrAuthError(
                "key_not_found",
                f"The token names key id {kid!r}, which is not in the JWKS registered for {owner}; if "
                "the EHR rotated its keys, an administrator must register the new JWKS.",
            )
        if len(matches) > 1:
            raise EhrAuthError(
                "invalid_jwks",
                f"The JWKS registered for {owner} holds more than one signing key with id {kid!r}.",
            )
        return matches[0]
    matches = [k for k in signing if k.get("kty") == kty]
    if len(matches) != 1:
        raise EhrAuthError(
            "key_not_found",
            f"The token has no 'kid' header and the JWKS registered for {owner} holds {len(matches)} "
            f"{kty} signing keys, so the key cannot be chosen; the EHR must send 'kid'.",
        )
    return matches[0]


def _check_key_fits(jwk: Mapping, *, alg: str, owner: str) -> None:
    """The key's type, curve and (if stated) alg must be those `alg` needs."""
    kty, crv = ASYMMETRIC_ALGORITHMS[alg]
    if jwk.get("kty") != kty or (crv is not None and jwk.get("crv") != crv):
        shape = jwk.get("kty") if jwk.get("kty") != "EC" else f"EC {jwk.get('crv')}"
        raise EhrAuthError(
            "algorithm_key_mismatch",
            f"The token says {alg} but key {jwk.get('kid')!r} of {owner} is of type {shape}; {alg} needs "
            f"{kty}{' ' + crv if crv else ''}.",
        )
    if jwk.get("alg") not in (None, alg):
        raise EhrAuthError(
            "algorithm_key_mismatch",
            f"The token says {alg} but key {jwk.get('kid')!r} of {owner} is registered for {jwk['alg']}.",
        )


def select_jwk(jwks: Any, *, alg: str, kid: str | None, owner: str) -> jwt.PyJWK:
    """The key of ``jwks`` that may verify a token with header ``alg``/``kid``, as a PyJWK bound to alg.

    With a ``kid`` the key must carry that kid; without one the JWKS must hold exactly one signing key
    of the algorithm's type. The key's type, curve and (if stated) ``alg`` and ``use`` must fit ``alg``,
    so an RSA key can never be used under an EC algorithm or the reverse. ``owner`` names whose JWKS it
    is in the error sentences (e.g. "the EHR https://ehr.example/fhir").
    """
    if alg not in ASYMMETRIC_ALGORITHMS:
        raise EhrAuthError("algorithm_not_allowed", f"The algorithm {alg!r} is not an asymmetric one.")
    kty, _ = ASYMMETRIC_ALGORITHMS[alg]
    signing = [k for k in _jwks_keys(jwks, owner) if k.get("use", "sig") == "sig"]
    jwk = _signing_key(signing, kid=kid, kty=kty, owner=owner)
    _check_key_fits(jwk, alg=alg, owner=owner)
    try:
        return jwt.PyJWK(dict(jwk), algorithm=alg)
    except jwt.PyJWTError as exc:
        raise EhrAuthError(
            "invalid_jwks",
            f"Key {jwk.get('kid')!r} in the JWKS registered for {owner} cannot be loaded ({exc}); an "
            "administrator must register a valid JWKS.",
        ) from exc


def _algorithm_and_kid(token: Any, algorithms: Collection[str]) -> tuple[str, str | None]:
    """The token's header `alg` (checked against `algorithms`) and `kid`, read before verification."""
    if not isinstance(token, str) or not token:
        raise EhrAuthError("missing_token", "The bearer token is empty.")
    if len(token) > MAX_TOKEN_BYTES:
        raise EhrAuthError(
            "malformed_token",
            f"The bearer token is {len(token)} characters long, more than the {MAX_TOKEN_BYTES} accepted.",
        )
    header = _unverified_header(token)
    alg = header.get("alg")
    _check_algorithm(alg, algorithms)
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise EhrAuthError("malformed_token", "The token's 'kid' header is not a string.")
    return alg, kid


def _registered_jwks(iss: str, jwks_for_issuer: Callable[[str], dict | None]) -> dict:
    jwks = jwks_for_issuer(iss)
    if jwks is None:
        raise EhrAuthError(
            "unknown_issuer",
            f"The token's issuer {iss} is not a registered EHR; an administrator must register it "
            "(with its JWKS) before it can call this service.",
        )
    return jwks


def verify_cds_jwt(
    token: str,
    *,
    jwks_for_issuer: Callable[[str], dict | None],
    audience: str | Sequence[str],
    seen_jti: Callable[[str, str, float], bool],
    leeway: int = 60,
    max_lifetime: int = 300,
    algorithms: Collection[str] = DEFAULT_ALGORITHMS,
    algorithms_for_issuer: Callable[[str], Collection[str]] | None = None,
) -> VerifiedCall:
    """Verify a CDS Hooks 2.0 bearer JWT and record its jti; raise EhrAuthError on any doubt.

    ``audience`` is the URL of the CDS Service endpoint called, or the URLs it may be known by (``aud``
    may be one string or a list holding one of them). ``seen_jti(iss, jti, exp)`` must atomically
    record the pair and return True if it was already there; it is called last, so only tokens that
    passed every other check are stored, and ``exp`` tells the store when the row may be purged.
    ``algorithms`` may narrow or widen the default ES384/RS384, but never beyond
    ``ASYMMETRIC_ALGORITHMS``; ``algorithms_for_issuer(iss)``, when given, narrows it further to what
    that EHR was registered with.
    """
    alg, kid = _algorithm_and_kid(token, algorithms)
    iss = _unverified_issuer(token)
    jwks = _registered_jwks(iss, jwks_for_issuer)
    if algorithms_for_issuer is not None:
        _check_algorithm(alg, [a for a in algorithms_for_issuer(iss) if a in algorithms])
    key = select_jwk(jwks, alg=alg, kid=kid, owner=f"the EHR {iss}")

    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[alg],
            audience=audience,
            issuer=iss,
            leeway=leeway,
            options={"require": list(REQUIRED_CLAIMS), "verify_signature": True, "strict_aud": False},
        )
    except jwt.PyJWTError as exc:
        raise _translate(exc, iss=iss, audience=audience, token=token) from exc

    iat, exp, jti, sub = _claims_check(claims, iss=iss, max_lifetime=max_lifetime)
    if seen_jti(iss, jti, float(exp)):
        raise EhrAuthError(
            "replayed_token",
            f"The token with jti {jti!r} from {iss} was already used; a token is good for one call only.",
        )
    return VerifiedCall(iss=iss, sub=sub, jti=jti, exp=int(exp), kid=kid, alg=alg, claims=claims)


def _claims_check(claims: dict[str, Any], *, iss: str, max_lifetime: int) -> tuple[Any, Any, str, str | None]:
    """iat, exp, jti and sub of verified claims, with the checks PyJWT does not make."""
    iat, exp, jti = claims["iat"], claims["exp"], claims["jti"]
    if not _is_number(iat) or not _is_number(exp):
        raise EhrAuthError("malformed_token", "The token's 'iat' and 'exp' must be numbers of seconds.")
    if exp - iat > max_lifetime:
        raise EhrAuthError(
            "lifetime_too_long",
            f"The token is valid for {int(exp - iat)} seconds (exp - iat); tokens from {iss} may live at "
            f"most {max_lifetime} seconds. The EHR must mint a fresh short-lived token for each call.",
        )
    if not isinstance(jti, str) or not jti.strip():
        raise EhrAuthError("missing_claim", "The token's 'jti' is empty; each call needs a unique 'jti'.")
    sub = claims.get("sub")
    if sub is not None and not isinstance(sub, str):
        raise EhrAuthError("malformed_token", "The token's 'sub' is not a string.")
    return iat, exp, jti, sub


def _check_algorithm(alg: Any, allowed: Collection[str]) -> None:
    """Refuse ``none``, HMAC and anything not both asymmetric and allowed, with a sentence for each."""
    if not isinstance(alg, str) or not alg:
        raise EhrAuthError("malformed_token", "The token's header names no 'alg'.")
    if alg.lower() == "none":
        raise EhrAuthError(
            "unsigned_token",
            "The token is unsigned (alg 'none'); CDS Hooks calls must be signed with ES384 or RS384.",
        )
    if alg.upper().startswith("HS"):
        raise EhrAuthError(
            "symmetric_algorithm",
            f"The token is signed with {alg}, a shared-secret algorithm, which this service never accepts; "
            "the EHR must sign with its private key (ES384 or RS384).",
        )
    permitted = [a for a in allowed if a in ASYMMETRIC_ALGORITHMS]
    if alg not in permitted:
        raise EhrAuthError(
            "algorithm_not_allowed",
            f"The token is signed with {alg}; this service accepts {', '.join(permitted) or 'nothing'}.",
        )


def _unverified_header(token: str) -> dict[str, Any]:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise EhrAuthError(
            "malformed_token", f"The bearer token is not a JWT (its header cannot be read: {exc})."
        ) from exc
    if not isinstance(header, dict):
        raise EhrAuthError("malformed_token", "The token's header is not a JSON object.")
    return header


def _unverified_issuer(token: str) -> str:
    """The ``iss`` claim read before verification, only to choose which registered JWKS to verify with."""
    try:
        payload = jwt.decode(token, options={"verify_signature": False})
    except (jwt.PyJWTError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EhrAuthError("malformed_token", f"The token's payload is not a JSON object ({exc}).") from exc
    iss = payload.get("iss") if isinstance(payload, dict) else None
    if not isinstance(iss, str) or not iss:
        raise EhrAuthError(
            "missing_claim", "The token has no 'iss' claim, so the EHR that sent it cannot be identified."
        )
    return iss


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _translate(exc: jwt.PyJWTError, *, iss: str, audience: str | Sequence[str], token: str) -> EhrAuthError:
    """One actionable sentence per PyJWT failure (order matters: subclasses first)."""
    if isinstance(exc, jwt.InvalidSignatureError):
        return EhrAuthError(
            "bad_signature",
            f"The token's signature does not verify with the key registered for {iss}; it was signed "
            "with another key, or the token was altered.",
        )
    if isinstance(exc, jwt.ExpiredSignatureError):
        return EhrAuthError(
            "expired_token",
            "The token has expired (exp is in the past); the EHR must send a fresh token, and its clock "
            "must be correct.",
        )
    if isinstance(exc, jwt.ImmatureSignatureError):
        return EhrAuthError(
            "token_not_yet_valid",
            "The token's issue time (iat) is in the future; the EHR's clock is ahead of this server's.",
        )
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return EhrAuthError(
            "missing_claim",
            f"The token has no {exc.claim!r} claim; CDS Hooks tokens must carry iss, aud, exp, iat and jti.",
        )
    if isinstance(exc, jwt.InvalidAudienceError):
        got = _unverified_claim(token, "aud")
        wanted = repr(audience) if isinstance(audience, str) else " or ".join(repr(a) for a in audience)
        return EhrAuthError(
            "wrong_audience",
            f"The token's audience {got!r} is not this service's URL {wanted}; the EHR must set "
            "'aud' to the exact CDS Service URL it calls.",
        )
    if isinstance(exc, jwt.InvalidIssuerError):
        return EhrAuthError("unknown_issuer", f"The token's issuer does not match {iss}.")
    if isinstance(exc, jwt.InvalidJTIError):
        return EhrAuthError("missing_claim", "The token's 'jti' is not a string.")
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return EhrAuthError("algorithm_not_allowed", f"The token's algorithm was refused ({exc}).")
    if isinstance(exc, jwt.InvalidKeyError | jwt.PyJWKError):
        return EhrAuthError("invalid_jwks", f"The key registered for {iss} cannot verify this token ({exc}).")
    return EhrAuthError("malformed_token", f"The token cannot be verified ({exc}).")


def _unverified_claim(token: str, name: str) -> Any:
    try:
        return jwt.decode(token, options={"verify_signature": False}).get(name)
    except jwt.PyJWTError:
        return None
