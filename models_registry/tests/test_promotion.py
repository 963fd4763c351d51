"""The promotion gate: computed at registration, enforced at promotion, overridable only by an admin
with a written reason that is kept in an append-only record."""

import numpy as np
import pandas as pd
import pytest
import skops.io
import yaml
from django.core.management import call_command
from django.core.management.base import CommandError
from sklearn.metrics import brier_score_loss, roc_auc_score

from common.models import AppendOnlyError
from demo import rhc as demo_rhc
from engine import checks
from models_registry.bundle import CHALLENGER_TRUSTED_TYPES
from models_registry.models import ModelVersion, Promotion, RegisteredModel
from models_registry.services import PromotionRefused, model_register, model_version_promote

REASON = (
    "Margin pre-registered at 0.03 was set for a weaker challenger; clinical lead approved on 2026-01-04."
)


def _with_margin(bad_bundle, margin):
    path = bad_bundle()
    spec = yaml.safe_load((path / "bundle.yaml").read_text())
    spec["promotion"] = {"auroc_margin": margin}
    (path / "bundle.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _challenger_risk(path):
    data = (path / "challenger.skops").read_bytes()
    challenger = skops.io.loads(
        data, trusted=[t for t in skops.io.get_untrusted_types(data=data) if t in CHALLENGER_TRUSTED_TYPES]
    )
    reference = pd.read_parquet(path / "reference.parquet")
    return challenger.predict_proba(reference[demo_rhc.INPUT_NAMES])[:, 1]


def test_gate_figures_are_stored_and_equal_sklearn(model_version, demo_bundle_dir):
    reference = pd.read_parquet(demo_bundle_dir / "reference.parquet")
    labels = reference["died_30d"].to_numpy()
    risk = reference["expected_risk"].to_numpy(dtype=np.float64)
    challenger = _challenger_risk(demo_bundle_dir)
    gate = model_version.gate

    assert gate["applicable"] is True and gate["passed"] is True
    assert gate["margin"] == 0.0
    assert "after seeing that XGBoost beats" in gate["margin_reason"]
    auroc, ece, brier = gate["criteria"]
    assert auroc["model"] == round(roc_auc_score(labels, risk), 4)
    assert auroc["challenger"] == round(roc_auc_score(labels, challenger), 4)
    assert brier["model"] == round(brier_score_loss(labels, risk), 4)
    assert brier["challenger"] == round(brier_score_loss(labels, challenger), 4)
    assert ece["model"] < ece["challenger"]
    assert gate["auroc_difference"]["value"] == round(
        roc_auc_score(labels, risk) - roc_auc_score(labels, challenger), 4
    )
    # The fixture's promotion went through the gate and is on record.
    promotion = Promotion.objects.get(version=model_version)
    assert (promotion.gate_passed, promotion.overridden, promotion.override_reason) == (True, False, "")
    assert promotion.gate == gate


def test_gate_refuses_with_the_default_margin_and_stores_nothing(db, model_store, bad_bundle):
    path = _with_margin(bad_bundle, 0.03)

    with pytest.raises(PromotionRefused) as refused:
        model_register(path=path, promote=True)

    message = str(refused.value)
    assert "icu-mortality-30d v1 cannot be promoted. The promotion gate fails: AUROC 0.72" in message
    assert "needs AUROC(model) >= AUROC(challenger) + 0.03" in message
    assert "ECE" not in message.split("An admin")[0].split("fails:")[1]  # calibration is not the problem
    assert RegisteredModel.objects.count() == 0 and Promotion.objects.count() == 0


def test_failed_gate_is_overridden_only_by_an_admin_with_a_written_reason(
    db, model_store, bad_bundle, alice, charlie
):
    version, _ = model_register(path=_with_margin(bad_bundle, 0.03))
    assert version.gate["passed"] is False and version.status == ModelVersion.Status.CANDIDATE

    with pytest.raises(PromotionRefused, match="An admin may override with a written reason"):
        model_version_promote(version=version, user=charlie)
    with pytest.raises(PromotionRefused, match="Only an admin may override the gate"):
        model_version_promote(version=version, user=alice, override_reason=REASON)
    with pytest.raises(PromotionRefused, match="at least 20 characters"):
        model_version_promote(version=version, user=charlie, override_reason="ok")
    version.refresh_from_db()
    assert version.status == ModelVersion.Status.CANDIDATE and Promotion.objects.count() == 0

    model_version_promote(version=version, user=charlie, override_reason=REASON)

    version.refresh_from_db()
    assert (version.status, version.promoted_by) == (ModelVersion.Status.PRODUCTION, charlie)
    record = Promotion.objects.get()
    assert (record.user, record.overridden, record.gate_passed) == (charlie, True, False)
    assert record.override_reason == REASON
    assert record.gate["criteria"][0]["passed"] is False
    assert record.gate["criteria"][0]["required"] == round(record.gate["criteria"][0]["challenger"] + 0.03, 4)
    # The audit record is append-only.
    record.override_reason = "edited"
    with pytest.raises(AppendOnlyError):
        record.save()
    with pytest.raises(AppendOnlyError):
        Promotion.objects.all().delete()


def test_register_model_command_fails_with_the_gate_message_and_accepts_an_override(
    db, model_store, bad_bundle, charlie
):
    path = _with_margin(bad_bundle, 0.03)

    with pytest.raises(
        CommandError,
        match=r"Not registered: icu-mortality-30d v1 cannot be promoted\. The promotion gate fails: AUROC",
    ):
        call_command("register_model", str(path), "--promote")
    assert ModelVersion.objects.count() == 0

    with pytest.raises(CommandError, match="Only an admin may override"):
        call_command("register_model", str(path), "--promote", "--override-reason", REASON)

    call_command("register_model", str(path), "--promote", "--override-reason", REASON, "--user", "charlie")

    version = ModelVersion.objects.get()
    assert version.status == ModelVersion.Status.PRODUCTION and version.registered_by == charlie
    assert Promotion.objects.get().override_reason == REASON


def test_bundle_without_challenger_has_no_gate_to_fail(db, model_store, bad_bundle):
    path = bad_bundle()
    spec = yaml.safe_load((path / "bundle.yaml").read_text())
    del spec["challenger"]
    (path / "bundle.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    (path / "challenger.skops").unlink()

    version, _ = model_register(path=path, promote=True)

    assert version.gate["applicable"] is False and version.gate["passed"] is True
    assert version.status == ModelVersion.Status.PRODUCTION
    assert "challenger" not in version.metrics


def _summary(auroc, ece, brier):
    return {"auroc": {"value": auroc}, "ece": {"value": ece}, "brier": {"value": brier}}


def test_gate_fails_on_worse_calibration_even_with_better_discrimination():
    gate = checks.promotion_gate(
        model=_summary(0.80, 0.051, 0.180), challenger=_summary(0.70, 0.030, 0.190), margin=0.03
    )

    assert gate["passed"] is False
    assert [c["passed"] for c in gate["criteria"]] == [True, False, True]
    assert gate["detail"] == (
        "The promotion gate fails: ECE 0.0510 vs challenger 0.0300 "
        "(needs ECE(model) <= ECE(challenger), i.e. <= 0.0300)."
    )


def test_gate_passes_exactly_at_the_margin():
    gate = checks.promotion_gate(
        model=_summary(0.7433, 0.03, 0.19), challenger=_summary(0.7133, 0.03, 0.19), margin=0.03
    )

    assert gate["passed"] is True
