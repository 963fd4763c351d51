"""Registered EHRs: registration, revocation and JWKS refresh (what ``register_ehr`` does), and the two
lookups the CDS Hooks token check needs (the issuer's keys, and the atomic replay check).

A JWKS URL is fetched only here, when an administrator registers or refreshes the EHR, through the
allow-listed fetcher: nothing fetches a key at request time, or from a URL a token names.
"""

from __future__ import annotations

import shlex
import urllib.parse
from collections.abc import Collection
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from patients.models import AuditEvent

from .ehr_http import AllowListedHttp, SmartLaunchError, url_origin
from .ehr_jwt import ASYMMETRIC_ALGORITHMS, DEFAULT_ALGORITHMS, EhrAuthError, select_jwk
from .models import RegisteredEhr, SeenJti

JTI_MAX_LENGTH = 255


class EhrRegistrationError(ValueError):
    """Why an EHR cannot be registered, naming the option at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def jwks_check(jwks, *, source: str) -> dict:
    """A JWKS with at least one usable asymmetric signing key; no private key material, ever."""
    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    if not isinstance(keys, list) or not keys:
        raise EhrRegistrationError(source, "is not a JWKS: a JSON object with a non-empty 'keys' list.")
    usable = 0
    for index, key in enumerate(keys):
        if not isinstance(key, dict):
            raise EhrRegistrationError(source, f"keys[{index}] is not a JSON object.")
        if any(part in key for part in ("d", "p", "q", "k")):
            raise EhrRegistrationError(
                source, f"keys[{index}] holds private or symmetric key material; register public keys only."
            )
        algs = [a for a, (kty, crv) in ASYMMETRIC_ALGORITHMS.items() if kty == key.get("kty")]
        for alg in algs:
            if key.get("alg") not in (None, alg):
                continue
            try:
                select_jwk({"keys": [key]}, alg=alg, kid=key.get("kid"), owner=source)
            except EhrAuthError:
                continue
            usable += 1
            break
    if not usable:
        raise EhrRegistrationError(source, "holds no RSA or EC public key that can verify a signature.")
    return jwks


def jwks_fetch(url: str) -> dict:
    """The JWKS at a URL an administrator gave (register_ehr --jwks-url or --refresh)."""
    http = AllowListedHttp([url], timeout=settings.EHR_HTTP_TIMEOUT_SECONDS)
    try:
        response = http.get(url)
    except (SmartLaunchError, OSError) as exc:
        raise EhrRegistrationError("--jwks-url", f"{url} could not be fetched ({exc}).") from exc
    if response.status != 200:
        raise EhrRegistrationError("--jwks-url", f"{url} answered HTTP {response.status}.")
    try:
        return response.json()
    except (ValueError, UnicodeDecodeError) as exc:
        raise EhrRegistrationError("--jwks-url", f"{url} did not answer JSON ({exc}).") from exc


def _audit(action: str, command: list[str]) -> None:
    AuditEvent.objects.create(user=None, action=action, path=shlex.join(["manage.py", *command])[:500])


def algorithms_check(algorithms: Collection[str], *, other_asymmetric: bool = False) -> list[str]:
    """The algorithms an EHR's tokens may be signed with: ES384 and RS384, the two CDS Hooks 2.0
    names; another asymmetric one only with the explicit opt-in (--allow-other-asymmetric), and
    never none or a shared-secret (HS*) algorithm."""
    wrong = [a for a in algorithms if a not in ASYMMETRIC_ALGORITHMS]
    if wrong or not algorithms:
        allowed = ", ".join(DEFAULT_ALGORITHMS)
        raise EhrRegistrationError(
            "--algorithms", f"{', '.join(wrong) or 'none'}: choose from {allowed} (asymmetric only)."
        )
    others = [a for a in algorithms if a not in DEFAULT_ALGORITHMS]
    if others and not other_asymmetric:
        raise EhrRegistrationError(
            "--algorithms",
            f"{', '.join(others)}: CDS Hooks 2.0 names {', '.join(DEFAULT_ALGORITHMS)}; to accept another "
            "asymmetric algorithm from this EHR, add --allow-other-asymmetric.",
        )
    return list(dict.fromkeys(algorithms))


def smart_origins_check(origins: Collection[str]) -> list[str]:
    """Origins (scheme://host[:port], no path) where this EHR's token endpoint and JWKS may live."""
    checked = []
    for origin in origins:
        parts = urllib.parse.urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path.strip("/"):
            raise EhrRegistrationError(
                "--smart-origin", f"{origin!r} is not an origin such as https://auth.ehr.example.org."
            )
        checked.append(url_origin(origin))
    return list(dict.fromkeys(checked))


def ehr_register(
    *,
    iss: str,
    jwks: dict | None = None,
    jwks_url: str = "",
    name: str = "",
    client_id: str = "",
    algorithms: Collection[str] | None = None,
    other_asymmetric: bool = False,
    smart_origins: Collection[str] = (),
    command: list[str],
) -> tuple[RegisteredEhr, bool]:
    """Register (or update, un-revoking) the EHR ``iss`` with its JWKS (given, or fetched from
    ``jwks_url`` now); audited with the command line. Returns the EHR and whether it is new."""
    if not iss.startswith(("https://", "http://")):
        raise EhrRegistrationError("ISS", f"{iss!r} is not the EHR's FHIR base URL (http(s)://...).")
    if (jwks is None) == (not jwks_url):
        raise EhrRegistrationError("--jwks-file", "give exactly one of --jwks-file and --jwks-url.")
    if jwks is None:
        jwks = jwks_fetch(jwks_url)
    jwks_check(jwks, source="--jwks-url" if jwks_url else "--jwks-file")
    values = {
        "name": name,
        "jwks": jwks,
        "jwks_url": jwks_url,
        "jwks_fetched_at": timezone.now() if jwks_url else None,
        "client_id": client_id,
        "smart_origins": smart_origins_check(smart_origins),
        "revoked_at": None,
    }
    if algorithms is not None:
        values["algorithms"] = algorithms_check(algorithms, other_asymmetric=other_asymmetric)
    with transaction.atomic():
        ehr, created = RegisteredEhr.objects.update_or_create(iss=iss.rstrip("/"), defaults=values)
        _audit("register_ehr", command)
    return ehr, created


def ehr_refresh(*, iss: str, command: list[str]) -> RegisteredEhr:
    """Fetch the registered JWKS URL again (the EHR rotated its keys)."""
    ehr = RegisteredEhr.objects.filter(iss=iss.rstrip("/")).first()
    if ehr is None:
        raise EhrRegistrationError("ISS", f"{iss} is not a registered EHR.")
    if not ehr.jwks_url:
        raise EhrRegistrationError("--refresh", f"{iss} was registered from a file; register its new JWKS.")
    jwks = jwks_check(jwks_fetch(ehr.jwks_url), source="--jwks-url")
    with transaction.atomic():
        RegisteredEhr.objects.filter(pk=ehr.pk).update(jwks=jwks, jwks_fetched_at=timezone.now())
        _audit("refresh_ehr_jwks", command)
    ehr.refresh_from_db()
    return ehr


def ehr_revoke(*, iss: str, command: list[str]) -> RegisteredEhr:
    """Stop the EHR calling the service and launching the app (kept, for the audit trail)."""
    ehr = RegisteredEhr.objects.filter(iss=iss.rstrip("/")).first()
    if ehr is None:
        raise EhrRegistrationError("ISS", f"{iss} is not a registered EHR.")
    with transaction.atomic():
        if ehr.revoked_at is None:
            ehr.revoked_at = timezone.now()
            ehr.save(update_fields=["revoked_at"])
        _audit("revoke_ehr", command)
    return ehr


def ehr_active(iss: str) -> RegisteredEhr | None:
    """The registered, unrevoked EHR of a token or launch ``iss`` (trailing slash ignored)."""
    return RegisteredEhr.objects.filter(iss=iss.rstrip("/"), revoked_at__isnull=True).first()


class IssuerKeys:
    """``jwks_for_issuer`` and ``algorithms_for_issuer`` for ehr_jwt, from the registered EHRs; it
    remembers the EHR it found so the view knows who called."""

    def __init__(self) -> None:
        self.ehr: RegisteredEhr | None = None

    def jwks(self, iss: str) -> dict | None:
        ehr = RegisteredEhr.objects.filter(iss=iss.rstrip("/")).first()
        if ehr is None:
            return None
        if ehr.revoked:
            raise EhrAuthError(
                "revoked_issuer",
                f"The EHR {iss} was revoked by an administrator and may not call this service.",
            )
        self.ehr = ehr
        return ehr.jwks

    def algorithms(self, iss: str) -> list[str]:
        return list(self.ehr.algorithms) if self.ehr is not None else []


def jti_seen(iss: str, jti: str, exp: float) -> bool:
    """Record (iss, jti); True when it was already there. Atomic: the unique constraint decides, so
    two concurrent calls with one token cannot both pass (the second insert waits, then fails)."""
    if len(jti) > JTI_MAX_LENGTH or len(iss) > 500:
        raise EhrAuthError("malformed_token", f"The token's jti is longer than {JTI_MAX_LENGTH} characters.")
    try:
        with transaction.atomic():
            SeenJti.objects.create(iss=iss, jti=jti, exp=datetime.fromtimestamp(exp, tz=UTC))
    except IntegrityError:
        return True
    return False


def jti_prune(*, now: datetime | None = None) -> int:
    """Delete rows of tokens that expired longer ago than the clock leeway: they cannot be replayed."""
    cutoff = (now or timezone.now()) - timedelta(seconds=settings.CDS_JWT_LEEWAY_SECONDS)
    deleted, _ = SeenJti.objects.filter(exp__lt=cutoff).delete()
    return deleted
