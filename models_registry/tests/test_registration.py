"""Registering bundles: versions, idempotency, features, promotion, the command."""

import os
import shutil
import subprocess
import sys
import zipfile
from urllib.parse import quote

import pytest
import yaml
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from demo import rhc as demo_rhc
from models_registry.models import ModelFeature, ModelVersion, RegisteredModel
from models_registry.services import model_register, model_version_promote


def _changed_copy(bad_bundle, **spec_changes):
    path = bad_bundle()
    spec = yaml.safe_load((path / "bundle.yaml").read_text())
    spec.update(spec_changes)
    (path / "bundle.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_register_creates_version_one_with_features_in_order(db, model_store, demo_bundle_dir):
    version, created = model_register(path=demo_bundle_dir)

    assert created is True
    assert version.version == 1
    assert version.status == ModelVersion.Status.CANDIDATE
    assert version.registered_model.name == "icu-mortality-30d"
    assert version.registered_model.horizon_hours == 720
    names = list(version.features.order_by("position").values_list("name", flat=True))
    assert names == demo_rhc.FEATURE_NAMES
    assert [f.name for f in version.input_features()] == demo_rhc.INPUT_NAMES
    rhc = version.features.get(name="rhc_day1")
    assert rhc.decision_time is False
    creatinine = version.features.get(name="creatinine")
    assert (creatinine.unit, creatinine.code, creatinine.source) == ("mg/dL", "LOINC:2160-0", "LIS")
    assert (creatinine.range_min, creatinine.range_max) == (0.0, 30.0)
    assert version.features.get(name="cancer").categories == ["No", "Yes", "Metastatic"]
    assert version.features.get(name="age").mutable is False
    # Every artifact is stored content-addressed under its sha256.
    assert set(version.artifacts) == {
        "bundle.yaml",
        "model.json",
        "background.parquet",
        "reference.parquet",
        "challenger.skops",
    }
    for name, digest in version.artifacts.items():
        assert (model_store / digest).read_bytes() == (demo_bundle_dir / name).read_bytes()
    assert version.background_size == 200
    assert version.reference_size == 1147
    assert 0 < version.tier_medium < version.tier_high < 1


def test_identical_bundle_returns_the_same_version(db, model_store, demo_bundle_dir):
    first, created_first = model_register(path=demo_bundle_dir)
    again, created_again = model_register(path=demo_bundle_dir)

    assert (created_first, created_again) == (True, False)
    assert again.pk == first.pk
    assert ModelVersion.objects.count() == 1
    assert ModelFeature.objects.count() == len(demo_rhc.FEATURES)


def test_changed_bundle_gets_version_two(db, model_store, demo_bundle_dir, bad_bundle):
    model_register(path=demo_bundle_dir)
    changed = _changed_copy(bad_bundle, intended_use="Retrained copy for the registry tests.")

    version, created = model_register(path=changed)

    assert created is True
    assert version.version == 2
    assert RegisteredModel.objects.count() == 1
    assert version.artifacts["model.json"] == ModelVersion.objects.get(version=1).artifacts["model.json"]


def test_promotion_retires_the_previous_production_version(db, model_store, demo_bundle_dir, bad_bundle):
    first, _ = model_register(path=demo_bundle_dir, promote=True)
    assert first.status == ModelVersion.Status.PRODUCTION
    assert first.promoted_at is not None

    second, _ = model_register(path=_changed_copy(bad_bundle, intended_use="v2"), promote=True)
    first.refresh_from_db()

    assert second.status == ModelVersion.Status.PRODUCTION
    assert first.status == ModelVersion.Status.RETIRED
    assert first.registered_model.production_version() == second

    model_version_promote(version=first)
    second.refresh_from_db()
    assert first.registered_model.production_version().pk == first.pk
    assert second.status == ModelVersion.Status.RETIRED


def test_zip_bundle_registers(db, model_store, demo_bundle_dir, tmp_path):
    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for file in demo_bundle_dir.iterdir():
            zipped.write(file, f"icu-mortality-30d/{file.name}")

    version, created = model_register(path=archive)

    assert created is True
    # The same content as the directory: same bundle hash.
    assert version.bundle_sha256 == model_register(path=demo_bundle_dir)[0].bundle_sha256


def test_register_model_command_prints_name_version_and_status(db, model_store, demo_bundle_dir, capsys):
    call_command("register_model", str(demo_bundle_dir), "--promote")
    call_command("register_model", str(demo_bundle_dir))

    out = capsys.readouterr().out
    assert "Registered icu-mortality-30d version 1 (production)" in out
    assert "Already registered icu-mortality-30d version 1 (production)" in out


def test_register_model_command_rejects_a_bad_bundle_with_exit_code_1(db, model_store, bad_bundle):
    path = bad_bundle()
    (path / "reference.parquet").unlink()
    database = connection.settings_dict
    if connection.vendor == "postgresql":
        credentials = quote(database["USER"]) + (
            f":{quote(database['PASSWORD'])}" if database["PASSWORD"] else ""
        )
        url = f"postgres://{credentials}@{database['HOST']}:{database['PORT'] or 5432}/{database['NAME']}"
    else:
        url = f"sqlite:///{database['NAME']}"
    # The command runs as a real process against the test database.
    env = {**os.environ, "DATABASE_URL": url, "MODEL_STORE": str(model_store)}

    result = subprocess.run(
        [sys.executable, "manage.py", "register_model", str(path), "--promote"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 1
    assert result.stderr.strip() == "CommandError: Bundle rejected: The bundle has no reference.parquet " + (
        "(reference file named in bundle.yaml)."
    )
    assert result.stdout == ""
    assert RegisteredModel.objects.count() == 0
    assert not model_store.exists() or not any(model_store.iterdir())


def test_call_command_raises_command_error_for_missing_path(db, model_store, tmp_path):
    with pytest.raises(CommandError, match="Bundle not found"):
        call_command("register_model", str(tmp_path / "nowhere"))


def test_train_demo_model_command_writes_a_registrable_bundle(db, model_store, tmp_path, capsys):
    out_dir = tmp_path / "trained"
    call_command("train_demo_model", str(out_dir), "--seed", "7", "--trees", "30", "--background-size", "100")

    out = capsys.readouterr().out
    assert f"Bundle written to {out_dir.resolve()}" in out
    assert "Reference AUROC 0.7" in out
    spec = yaml.safe_load((out_dir / "bundle.yaml").read_text())
    assert spec["name"] == "icu-mortality-30d"
    assert spec["horizon_hours"] == 720
    assert "intended_use" in spec and "known_failure_modes" in spec
    version, _ = model_register(path=out_dir)
    assert version.background_size == 100


def test_retraining_with_the_same_seed_is_byte_identical(demo_bundle_dir, tmp_path):
    from demo.training import train_demo_bundle

    again = tmp_path / "again"
    train_demo_bundle(again, n_estimators=60, background_size=200)

    for file in demo_bundle_dir.iterdir():
        assert (again / file.name).read_bytes() == file.read_bytes(), file.name
    shutil.rmtree(again)


def test_admin_shows_a_version_with_read_only_artifacts(model_version, admin_client):
    changelist = admin_client.get("/admin/models_registry/modelversion/")
    change = admin_client.get(f"/admin/models_registry/modelversion/{model_version.pk}/change/")

    assert changelist.status_code == 200
    assert change.status_code == 200
    body = change.content.decode()
    assert model_version.artifacts["model.json"] in body
    assert 'name="artifacts"' not in body  # shown, not an editable field
    assert admin_client.get("/admin/models_registry/modelversion/add/").status_code == 403
