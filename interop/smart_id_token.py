"""The OpenID Connect id_token of a SMART App Launch (see interop.smart_client for the whole flow):
its signature checked with the EHR's published keys, then its claims. Django-free."""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping
from typing import Any

import jwt

from interop.ehr_http import SmartLaunchError
from interop.ehr_jwt import EhrAuthError, select_jwk

#: SMART requires RS256 for id_tokens; the other asymmetric ones are accepted, never none/HS*.
ID_TOKEN_ALGORITHMS: tuple[str, ...] = ("RS256", "RS384", "ES256", "ES384")


def _id_token_key(
    id_token: str, *, jwks: Mapping[str, Any], issuer: str, algorithms: Iterable[str]
) -> tuple[jwt.PyJWK, str]:
    """(key, alg) that may verify the id_token: an allowed asymmetric algorithm, a key of the EHR's JWKS."""
    allowed = [a for a in algorithms if a in ID_TOKEN_ALGORITHMS]
    try:
        header = jwt.get_unverified_header(id_token)
    except jwt.PyJWTError as exc:
        raise _id_token_error(f"The id_token is not a JWT ({exc}).") from exc
    alg = header.get("alg")
    if alg not in allowed:
        raise _id_token_error(f"The id_token is signed with {alg!r}; only {', '.join(allowed)} are accepted.")
    kid = header.get("kid")
    try:
        key = select_jwk(jwks, alg=alg, kid=kid if isinstance(kid, str) else None, owner=f"the EHR {issuer}")
    except EhrAuthError as exc:
        raise _id_token_error(exc.detail) from exc
    return key, alg


def _check_id_token_claims(
    claims: dict, *, client_id: str, nonce: str | None, require_fhir_user: bool
) -> None:
    """The checks PyJWT does not make: azp with several audiences, the nonce, fhirUser."""
    aud = claims["aud"]
    if isinstance(aud, list) and len(aud) > 1 and claims.get("azp") != client_id:
        raise _id_token_error(f"The id_token has several audiences and its azp is not {client_id!r}.")
    if nonce is not None and not hmac.compare_digest(str(claims.get("nonce", "")).encode(), nonce.encode()):
        raise _id_token_error("The id_token's nonce does not match this launch; start again from the EHR.")
    if require_fhir_user and not (isinstance(claims.get("fhirUser"), str) and claims["fhirUser"]):
        raise _id_token_error(
            "The id_token has no fhirUser claim, so the EHR user cannot be mapped to a Sightline user; "
            "the launch must request the 'fhirUser' scope and the EHR must grant it."
        )


def validate_id_token(
    id_token: str,
    *,
    jwks: Mapping[str, Any],
    issuer: str,
    client_id: str,
    nonce: str | None = None,
    leeway: int = 60,
    algorithms: Iterable[str] = ID_TOKEN_ALGORITHMS,
    require_fhir_user: bool = True,
) -> dict[str, Any]:
    """Verify the OpenID Connect id_token (signature, iss, aud, exp, iat, nonce) and return its claims.

    ``fhirUser`` (who the EHR says the user is) is required by default because the app maps it to a
    Sightline user; only asymmetric algorithms are accepted, with the key from the EHR's JWKS.
    """
    key, alg = _id_token_key(id_token, jwks=jwks, issuer=issuer, algorithms=algorithms)
    try:
        claims = jwt.decode(
            id_token,
            key,
            algorithms=[alg],
            audience=client_id,
            issuer=issuer,
            leeway=leeway,
            options={"require": ["iss", "sub", "aud", "exp", "iat"]},
        )
    except jwt.InvalidSignatureError as exc:
        raise _id_token_error(
            f"The id_token's signature does not verify with the keys {issuer} publishes; it was not "
            "signed by that EHR."
        ) from exc
    except jwt.ExpiredSignatureError as exc:
        raise _id_token_error("The id_token has expired; start the launch again from the EHR.") from exc
    except jwt.InvalidAudienceError as exc:
        raise _id_token_error(f"The id_token was issued for another client, not {client_id!r}.") from exc
    except jwt.InvalidIssuerError as exc:
        raise _id_token_error(f"The id_token's issuer is not {issuer}.") from exc
    except jwt.PyJWTError as exc:
        raise _id_token_error(f"The id_token is not valid ({exc}).") from exc
    _check_id_token_claims(claims, client_id=client_id, nonce=nonce, require_fhir_user=require_fhir_user)
    return claims


def _id_token_error(detail: str) -> SmartLaunchError:
    return SmartLaunchError("invalid_id_token", detail, status=401)
