"""manage.py register_ehr: register from a file or a URL (fetched now), list, refresh, revoke; audited."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from interop.models import RegisteredEhr
from patients.models import AuditEvent


def _run(*args) -> str:
    out = StringIO()
    call_command("register_ehr", *args, stdout=out)
    return out.getvalue()


def test_register_from_file_list_and_revoke(db, fake_ehr, tmp_path):
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(fake_ehr.jwks()))
    out = _run(fake_ehr.iss, "--jwks-file", str(jwks), "--name", "Fake", "--client-id", "sightline")
    assert out.startswith(f"Registered {fake_ehr.iss} (Fake): 3 keys, algorithms ES384, RS384")
    ehr = RegisteredEhr.objects.get()
    assert (ehr.jwks, ehr.client_id, ehr.jwks_url, ehr.revoked_at) == (fake_ehr.jwks(), "sightline", "", None)
    assert fake_ehr.requests == []  # a file registration fetches nothing
    assert "active" in _run("--list")
    _run(fake_ehr.iss, "--revoke")
    ehr.refresh_from_db()
    assert ehr.revoked_at is not None
    assert "revoked" in _run("--list")
    actions = list(AuditEvent.objects.order_by("id").values_list("action", "path"))
    assert [a for a, _ in actions] == ["register_ehr", "list_ehrs", "revoke_ehr", "list_ehrs"]
    assert actions[0][1].startswith(f"manage.py register_ehr {fake_ehr.iss} --jwks-file ")


def test_register_from_url_fetches_once_and_refresh_fetches_again(db, fake_ehr):
    _run(fake_ehr.iss, "--jwks-url", fake_ehr.jwks_url)
    assert [r.path for r in fake_ehr.requests] == ["/jwks.json"]
    assert RegisteredEhr.objects.get().jwks == fake_ehr.jwks()
    _run(fake_ehr.iss, "--refresh")
    assert [r.path for r in fake_ehr.requests] == ["/jwks.json", "/jwks.json"]
    assert list(AuditEvent.objects.values_list("action", flat=True).order_by("id")) == [
        "register_ehr",
        "refresh_ehr_jwks",
    ]


@pytest.mark.parametrize(
    ("jwks", "message"),
    [
        ({"keys": []}, "non-empty 'keys' list"),
        ({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}, "private or symmetric key material"),
        ("not a jwks", "non-empty 'keys' list"),
    ],
)
def test_a_bad_jwks_is_refused_and_nothing_is_stored(db, fake_ehr, tmp_path, jwks, message):
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks))
    with pytest.raises(CommandError, match=message):
        _run(fake_ehr.iss, "--jwks-file", str(path))
    assert not RegisteredEhr.objects.exists() and not AuditEvent.objects.exists()


def test_private_keys_are_refused(db, fake_ehr, tmp_path):
    import jwt

    private = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(fake_ehr.keys["RS384"].private))
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [private]}))
    with pytest.raises(CommandError, match="private or symmetric key material"):
        _run(fake_ehr.iss, "--jwks-file", str(path))


def test_symmetric_algorithms_are_refused(db, fake_ehr, tmp_path):
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(fake_ehr.jwks()))
    with pytest.raises(CommandError, match="--algorithms: HS256"):
        _run(fake_ehr.iss, "--jwks-file", str(path), "--algorithms", "RS384,HS256")


def test_unreachable_url_and_missing_keys_are_clear_errors(db, fake_ehr):
    with pytest.raises(CommandError, match="--jwks-url: .* answered HTTP 404"):
        _run(fake_ehr.iss, "--jwks-url", fake_ehr.base_url + "/nothing.json")
    with pytest.raises(CommandError, match="--jwks-file PATH or --jwks-url URL"):
        _run(fake_ehr.iss)
    with pytest.raises(CommandError, match="is not a registered EHR"):
        _run(fake_ehr.iss, "--revoke")


def test_algorithms_beyond_es384_rs384_need_the_opt_in_and_never_hmac(db, fake_ehr, tmp_path):
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(fake_ehr.jwks()))
    with pytest.raises(CommandError, match="--algorithms: RS256: .* add --allow-other-asymmetric"):
        _run(fake_ehr.iss, "--jwks-file", str(path), "--algorithms", "RS384,RS256")
    assert not RegisteredEhr.objects.exists()
    for forbidden in ("HS256", "none"):
        with pytest.raises(CommandError, match=f"--algorithms: {forbidden}"):
            _run(
                fake_ehr.iss, "--jwks-file", str(path), "--algorithms", forbidden, "--allow-other-asymmetric"
            )
    _run(fake_ehr.iss, "--jwks-file", str(path), "--algorithms", "RS384,RS256", "--allow-other-asymmetric")
    assert RegisteredEhr.objects.get().algorithms == ["RS384", "RS256"]
    assert AuditEvent.objects.get().path.endswith("--algorithms RS384,RS256 --allow-other-asymmetric")


def test_smart_origins_are_registered_listed_and_checked(db, fake_ehr, tmp_path):
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(fake_ehr.jwks()))
    with pytest.raises(
        CommandError, match="--smart-origin: 'https://auth.example.org/oauth2' is not an origin"
    ):
        _run(fake_ehr.iss, "--jwks-file", str(path), "--smart-origin", "https://auth.example.org/oauth2")
    _run(fake_ehr.iss, "--jwks-file", str(path), "--smart-origin", "https://Auth.example.org")
    assert RegisteredEhr.objects.get().smart_origins == ["https://auth.example.org:443"]
    assert "smart_origins=https://auth.example.org:443" in _run("--list")
