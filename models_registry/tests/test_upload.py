"""Bundle upload over the API (admins only) and through the Django admin."""

import io
import zipfile

import pytest
import yaml
from django.contrib.messages import get_messages

from models_registry.models import ModelVersion, Promotion, RegisteredModel

URL = "/api/v1/models/"
REASON = "Clinical safety board accepted a smaller AUROC gain on 2026-01-04 (minutes ref 17)."


def _zip(directory, change_spec=None) -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for file in sorted(directory.iterdir()):
            data = file.read_bytes()
            if file.name == "bundle.yaml" and change_spec is not None:
                spec = yaml.safe_load(data)
                change_spec(spec)
                data = yaml.safe_dump(spec, sort_keys=False).encode()
            archive.writestr(f"bundle/{file.name}", data)
    buffer.seek(0)
    buffer.name = "bundle.zip"
    return buffer


def _strict_margin(spec):
    spec["promotion"] = {"auroc_margin": 0.03}


def test_admin_uploads_a_zip_and_gets_201_with_name_and_version(
    db, model_store, demo_bundle_dir, charlie_client
):
    response = charlie_client.post(URL, {"bundle": _zip(demo_bundle_dir), "promote": "true"})

    assert response.status_code == 201
    body = response.json()
    assert (body["name"], body["version"], body["status"]) == ("icu-mortality-30d", 1, "production")
    assert body["card_url"] == "/api/v1/models/icu-mortality-30d/versions/1/card/"
    version = ModelVersion.objects.get()
    assert version.registered_by.username == "charlie"
    # The same zip again: the existing version, 200.
    again = charlie_client.post(URL, {"bundle": _zip(demo_bundle_dir)})
    assert (again.status_code, again.json()["version"]) == (200, 1)


def test_clinician_auditor_and_anonymous_may_not_upload(
    db, model_store, demo_bundle_dir, alice_client, auditor_client, client
):
    for who in (alice_client, auditor_client):
        response = who.post(URL, {"bundle": _zip(demo_bundle_dir)})
        assert response.status_code == 403
        assert response.json()["error"] == "permission_denied"
    # Without a session or a token: 401, the endpoint takes `Authorization: Token <key>`.
    anonymous = client.post(URL, {"bundle": _zip(demo_bundle_dir)})
    assert (anonymous.status_code, anonymous.json()["error"]) == (401, "not_authenticated")
    assert anonymous["WWW-Authenticate"] == "Token"
    assert RegisteredModel.objects.count() == 0


def test_bad_bundle_upload_is_400_naming_the_problem(db, model_store, demo_bundle_dir, charlie_client):
    broken = _zip(demo_bundle_dir, lambda spec: spec["features"].pop(0))

    response = charlie_client.post(URL, {"bundle": broken})

    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_bundle",
        "detail": "Model input 'age' is not in the bundle.yaml features.",
        "fields": {"bundle": ["Model input 'age' is not in the bundle.yaml features."]},
    }
    assert RegisteredModel.objects.count() == 0


def test_missing_field_and_non_zip_are_400(db, model_store, charlie_client):
    missing = charlie_client.post(URL, {"promote": "true"})
    assert missing.status_code == 400 and missing.json()["fields"] == {"bundle": ["This field is required."]}

    not_zip = io.BytesIO(b"not a zip at all")
    not_zip.name = "bundle.zip"
    response = charlie_client.post(URL, {"bundle": not_zip})
    assert response.status_code == 400
    assert response.json()["detail"] == "bundle.zip is neither a bundle directory nor a .zip file."


def test_too_large_upload_is_413(db, model_store, demo_bundle_dir, charlie_client, settings):
    settings.MODEL_UPLOAD_MAX_BYTES = 10_000

    response = charlie_client.post(URL, {"bundle": _zip(demo_bundle_dir)})

    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    assert "at most 10,000 bytes" in response.json()["detail"]
    assert RegisteredModel.objects.count() == 0


def test_an_upload_larger_than_any_bundle_may_unpack_to_is_refused_unread(
    db, model_store, demo_bundle_dir, charlie_client, settings, monkeypatch
):
    """The upload limits were 512 MiB (the view) and 1 GiB (the body limit, nginx), above the
    256 MiB a bundle may unpack to: an upload that could never be accepted was still written to
    /tmp. By default the upload cap is the unpack cap plus 1 MiB, and anything larger is refused
    from its Content-Length, before a byte of it is read."""
    from django.core.files.uploadhandler import TemporaryFileUploadHandler

    unpacked = settings.MODEL_BUNDLE_MAX_UNPACKED_BYTES
    assert unpacked == 256 * 1024 * 1024
    assert settings.MODEL_UPLOAD_MAX_BYTES == settings.API_BODY_LIMITS[URL] == unpacked + 1024 * 1024
    written = []
    monkeypatch.setattr(TemporaryFileUploadHandler, "new_file", lambda *a, **k: written.append(a))
    declared = unpacked + 2 * 1024 * 1024  # 258 MiB: accepted before (under 512 MiB and 1 GiB)
    response = charlie_client.post(URL, {"bundle": _zip(demo_bundle_dir)}, CONTENT_LENGTH=str(declared))
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    assert f"({unpacked + 1024 * 1024:,} bytes)" in response.json()["detail"]
    assert written == [] and RegisteredModel.objects.count() == 0


def test_nginx_takes_no_larger_body_than_the_upload_cap(settings):
    from pathlib import Path

    conf = (Path(settings.BASE_DIR) / "docker" / "nginx.conf").read_text()
    size = next(
        line.split()[1] for line in conf.splitlines() if line.strip().startswith("client_max_body_size")
    )
    assert size.endswith("m;")
    assert int(size[:-2]) * 1024 * 1024 == settings.MODEL_UPLOAD_MAX_BYTES


def test_upload_promotion_refused_by_the_gate_is_422_and_override_is_audited(
    db, model_store, demo_bundle_dir, charlie_client
):
    refused = charlie_client.post(URL, {"bundle": _zip(demo_bundle_dir, _strict_margin), "promote": "true"})

    assert refused.status_code == 422
    assert refused.json()["error"] == "promotion_refused"
    assert "The promotion gate fails: AUROC" in refused.json()["detail"]
    assert RegisteredModel.objects.count() == 0

    overridden = charlie_client.post(
        URL,
        {"bundle": _zip(demo_bundle_dir, _strict_margin), "promote": "true", "override_reason": REASON},
    )

    assert overridden.status_code == 201 and overridden.json()["status"] == "production"
    record = Promotion.objects.get()
    assert (record.user.username, record.overridden, record.override_reason) == ("charlie", True, REASON)


@pytest.mark.parametrize("promote", [False, True])
def test_admin_site_upload_registers_the_zip(
    db, model_store, demo_bundle_dir, charlie_client, admin_client, promote
):
    page = charlie_client.get("/admin/models_registry/registeredmodel/upload/")
    assert page.status_code == 200 and b'name="bundle"' in page.content
    return_link = admin_client.get("/admin/models_registry/registeredmodel/")
    assert b"/admin/models_registry/registeredmodel/upload/" in return_link.content

    response = charlie_client.post(
        "/admin/models_registry/registeredmodel/upload/",
        {"bundle": _zip(demo_bundle_dir), "promote": "on" if promote else ""},
    )

    version = ModelVersion.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/admin/models_registry/modelversion/{version.pk}/change/"
    assert version.status == ("production" if promote else "candidate")


def test_admin_site_upload_shows_the_bundle_problem(db, model_store, demo_bundle_dir, charlie_client):
    response = charlie_client.post(
        "/admin/models_registry/registeredmodel/upload/",
        {"bundle": _zip(demo_bundle_dir, lambda spec: spec.update(format_version=2))},
    )

    assert response.status_code == 200
    assert "format_version is 2" in response.content.decode()
    assert RegisteredModel.objects.count() == 0


def test_admin_promote_action_asks_for_a_written_reason_when_the_gate_fails(
    db, model_store, demo_bundle_dir, admin_client, admin_user, tmp_path
):
    archive = tmp_path / "strict.zip"
    archive.write_bytes(_zip(demo_bundle_dir, _strict_margin).getvalue())
    from models_registry.services import model_register

    version, _ = model_register(path=archive)
    changelist = "/admin/models_registry/modelversion/"
    action = {"action": "promote", "_selected_action": [version.pk]}

    # The action stops on an intermediate page showing the gate's figures and asking why.
    page = admin_client.post(changelist, action)
    assert page.status_code == 200
    text = page.content.decode()
    assert "does not clear the promotion gate" in text and "The promotion gate fails: AUROC" in text
    assert 'name="override_reason"' in text
    version.refresh_from_db()
    assert version.status == "candidate" and Promotion.objects.count() == 0

    # Too short a reason: the form again, nothing promoted.
    short = admin_client.post(changelist, {**action, "confirm_override": "yes", "override_reason": "ok"})
    assert "Ensure this value has at least 20 characters" in short.content.decode()
    version.refresh_from_db()
    assert version.status == "candidate" and Promotion.objects.count() == 0

    done = admin_client.post(
        changelist, {**action, "confirm_override": "yes", "override_reason": REASON}, follow=True
    )
    assert "is now production (gate overridden" in done.content.decode()
    version.refresh_from_db()
    assert (version.status, version.promoted_by) == ("production", admin_user)
    record = Promotion.objects.get()
    assert (record.user, record.gate_passed, record.overridden, record.override_reason) == (
        admin_user,
        False,
        True,
        REASON,
    )
    assert record.gate == version.gate


def test_admin_promote_action_promotes_directly_when_the_gate_passes(
    db, model_store, demo_bundle_dir, admin_client
):
    from models_registry.services import model_register

    version, _ = model_register(path=demo_bundle_dir)

    response = admin_client.post(
        "/admin/models_registry/modelversion/", {"action": "promote", "_selected_action": [version.pk]}
    )

    assert response.status_code == 302
    assert [m.message for m in get_messages(response.wsgi_request)] == [f"{version} is now production."]
    version.refresh_from_db()
    assert version.status == "production"
    assert Promotion.objects.get().overridden is False
