"""Zip bombs and stowaways in a bundle upload (issue 15, finding 14): a zip that unpacks past
MODEL_BUNDLE_MAX_UNPACKED_BYTES is 413, a member bundle.yaml does not name is 400, a header that
lies about a member's size is refused; each names the member and nothing is stored or left on disk."""

import io
import struct
import tempfile
import zipfile

import pytest

from models_registry.models import RegisteredModel
from models_registry.tests.test_upload import URL, _zip

MIB = 1024 * 1024


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    """The temporary directory uploads and unpacking use, to show nothing is left in it."""
    folder = tmp_path / "scratch"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _bundle_zip(directory, replace: dict[str, int] | None = None, extra: dict[str, bytes] | None = None):
    """The bundle as a zip; `replace` swaps a member for that many zero bytes (compressed)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(directory.iterdir()):
            size = (replace or {}).get(file.name)
            if size is None:
                archive.writestr(f"bundle/{file.name}", file.read_bytes())
                continue
            with archive.open(f"bundle/{file.name}", "w", force_zip64=True) as member:
                for _ in range(size // MIB):
                    member.write(bytes(MIB))
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    buffer.seek(0)
    buffer.name = "bundle.zip"
    return buffer


def test_a_zip_bomb_under_the_old_1_gib_cap_is_413_naming_its_member(
    db, model_store, demo_bundle_dir, charlie_client, scratch
):
    # 300 MiB of zeros as model.json: well under 1 GiB (accepted and written out before), a few
    # hundred kilobytes on the wire.
    bomb = _bundle_zip(demo_bundle_dir, replace={"model.json": 300 * MIB})
    assert len(bomb.getvalue()) < 2 * MIB

    response = charlie_client.post(URL, {"bundle": bomb})

    assert response.status_code == 413
    body = response.json()
    assert body["error"] == "payload_too_large"
    assert "'bundle/model.json'" in body["detail"] and "268,435,456" in body["detail"]
    assert "bundle" in body["fields"]
    assert RegisteredModel.objects.count() == 0
    assert not model_store.exists() or not any(model_store.iterdir())
    assert list(scratch.iterdir()) == []


def test_the_cap_is_a_setting(db, model_store, demo_bundle_dir, charlie_client, settings, scratch):
    settings.MODEL_BUNDLE_MAX_UNPACKED_BYTES = 64 * 1024

    response = charlie_client.post(URL, {"bundle": _zip(demo_bundle_dir)})

    assert response.status_code == 413
    assert "more than the 65,536 a bundle may hold" in response.json()["detail"]
    assert RegisteredModel.objects.count() == 0


def test_a_member_bundle_yaml_does_not_name_is_400_naming_it(
    db, model_store, demo_bundle_dir, charlie_client, scratch
):
    stowaway = _bundle_zip(demo_bundle_dir, extra={"bundle/notes/payload.bin": b"x" * 1000})

    response = charlie_client.post(URL, {"bundle": stowaway})

    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid_bundle"
    assert "Zip member 'bundle/notes/payload.bin' is not a file bundle.yaml names" in body["detail"]
    assert RegisteredModel.objects.count() == 0
    assert list(scratch.iterdir()) == []


def _understate(data: bytes, member: str, size: int) -> bytes:
    """Rewrite the uncompressed size a zip declares for `member` (local and central headers)."""
    out = bytearray(data)
    encoded = member.encode()
    headers = ((b"PK\x03\x04", 22, 26, 30), (b"PK\x01\x02", 24, 28, 46))  # local, central
    for signature, size_at, name_len_at, name_at in headers:
        start = 0
        while (start := out.find(signature, start)) != -1:
            (name_len,) = struct.unpack_from("<H", out, start + name_len_at)
            if bytes(out[start + name_at : start + name_at + name_len]) == encoded:
                struct.pack_into("<I", out, start + size_at, size)
            start += 4
    return bytes(out)


def test_a_header_that_understates_a_member_is_refused_naming_it(
    db, model_store, demo_bundle_dir, charlie_client, settings, scratch
):
    settings.MODEL_BUNDLE_MAX_UNPACKED_BYTES = 8 * MIB
    honest = _bundle_zip(demo_bundle_dir, replace={"reference.parquet": 32 * MIB})
    # It says reference.parquet unpacks to 1 KiB: the declared total is under the cap.
    lying = io.BytesIO(_understate(honest.getvalue(), "bundle/reference.parquet", 1024))
    lying.name = "bundle.zip"
    assert sum(i.file_size for i in zipfile.ZipFile(lying).infolist()) < 8 * MIB
    lying.seek(0)

    response = charlie_client.post(URL, {"bundle": lying})

    assert response.status_code in (400, 413)
    assert "'bundle/reference.parquet'" in response.json()["detail"]
    assert RegisteredModel.objects.count() == 0
    assert list(scratch.iterdir()) == []
