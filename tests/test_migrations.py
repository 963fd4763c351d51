from io import StringIO

import pytest
from django.core.management import call_command


@pytest.mark.django_db
def test_no_model_change_lacks_a_migration():
    out = StringIO()
    try:
        call_command("makemigrations", "--check", "--dry-run", stdout=out, stderr=StringIO())
    except SystemExit as exc:
        pytest.fail(f"Models changed without a migration; run makemigrations:\n{out.getvalue()}")
        raise AssertionError from exc


@pytest.mark.django_db(transaction=True)
def test_existing_current_scores_get_what_the_worklist_reads_on_migrating():
    """explanations 0004 fills the current scores' new columns from their predictions and alerts."""
    from datetime import timedelta

    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor
    from django.utils import timezone

    from clinician_ui.tests.factories import model_version_create
    from patients.models import Alert, CurrentScore

    before = [("explanations", "0003_current_score")]
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    try:
        executor.migrate(before)
        apps = executor.loader.project_state(before).apps
        Patient = apps.get_model("explanations", "Patient")
        Prediction = apps.get_model("explanations", "Prediction")
        OldAlert = apps.get_model("explanations", "Alert")
        OldCurrent = apps.get_model("explanations", "CurrentScore")
        version = model_version_create(name="migration-check")
        now = timezone.now()

        def score(patient, risk, tier, hours_ago, bed):
            return Prediction.objects.create(
                registered_model_id=version.registered_model_id, model_version_id=version.pk,
                external_id=f"m-{patient.pk}-{hours_ago}", patient=patient, unit=patient.unit, bed=bed,
                scored_at=now - timedelta(hours=hours_ago), risk=risk, margin=0.0, tier=tier,
                features={}, payload_sha256="0" * 64,
            )  # fmt: skip

        alerting = Patient.objects.create(external_id="m-1", unit="MICU", bed="4")
        quiet = Patient.objects.create(external_id="m-2", unit="CCU", bed="9")
        earlier = score(alerting, 0.3, "medium", 2, "4")
        OldAlert.objects.create(prediction=earlier, patient=alerting, unit="MICU", tier="medium", risk=0.3)
        high = score(alerting, 0.8, "high", 1, "5")
        OldAlert.objects.create(prediction=high, patient=alerting, unit="MICU", tier="high", risk=0.8)
        low = score(quiet, 0.1, "low", 1, "9")
        for patient, prediction in ((alerting, high), (quiet, low)):
            OldCurrent.objects.create(patient=patient, prediction=prediction, scored_at=prediction.scored_at)
    finally:
        MigrationExecutor(connection).migrate(latest)

    alert = Alert.objects.get(prediction_id=high.pk)
    rows = CurrentScore.objects.order_by("patient__external_id").values_list(
        "prediction_id", "unit", "bed", "tier", "risk", "alert_id", "alerted_at"
    )
    assert list(rows) == [
        (high.pk, "MICU", "5", "high", 0.8, alert.pk, alert.created_at),
        (low.pk, "CCU", "9", "low", 0.1, None, None),
    ]
