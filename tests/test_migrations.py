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

    from patients.models import Alert, CurrentScore
    from tests.fixtures.factories import model_version_create

    before = [("explanations", "0003_current_score")]
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    # Created with today's models before going back: migrating to explanations 0003 also unapplies
    # the registry migrations that follow accounts 0001 (which depends on explanations 0006).
    version = model_version_create(name="migration-check")
    try:
        executor.migrate(before)
        apps = executor.loader.project_state(before).apps
        Patient = apps.get_model("explanations", "Patient")
        Prediction = apps.get_model("explanations", "Prediction")
        OldAlert = apps.get_model("explanations", "Alert")
        OldCurrent = apps.get_model("explanations", "CurrentScore")
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


OLD_HEAD = [
    ("explanations", "0006_cohort_chunk_failed"),
    ("clinician_ui", "0001_initial"),
    ("models_registry", "0003_apitoken"),
]


@pytest.mark.django_db(transaction=True)
def test_moving_models_to_accounts_and_patients_keeps_every_row_key_and_guarantee(migrator):
    """A database filled at the migration head before the restructure (patients, predictions,
    explanations, alerts, outcomes, actions, views, audit events, profiles and tokens in their old
    apps) migrates to today's head with every row, every foreign key and the append-only rules."""
    from django.utils import timezone

    old = migrator.apply_initial_migration(OLD_HEAD).apps
    User = old.get_model("auth", "User")
    now = timezone.now()
    nurse = User.objects.create(username="nurse", password="!")
    old.get_model("clinician_ui", "Profile").objects.create(user=nurse, role="clinician", units=["MICU"])
    old.get_model("explanations", "ServiceToken").objects.create(
        name="scorer", key_hash="a" * 64, prefix="abcd"
    )
    old.get_model("models_registry", "ApiToken").objects.create(user=nurse, key_hash="b" * 64, prefix="efgh")
    model = old.get_model("models_registry", "RegisteredModel").objects.create(name="sepsis", horizon_hours=6)
    version = old.get_model("models_registry", "ModelVersion").objects.create(
        registered_model=model, version=1, status="production", model_format="xgboost", spec={},
        tier_high=0.5, tier_medium=0.25, artifacts={}, bundle_sha256="c" * 64, background_size=10,
        reference_size=10,
    )  # fmt: skip
    patient = old.get_model("explanations", "Patient").objects.create(external_id="p-1", unit="MICU", bed="3")
    encounter = old.get_model("explanations", "Encounter").objects.create(external_id="e-1", patient=patient)
    prediction = old.get_model("explanations", "Prediction").objects.create(
        registered_model=model, model_version=version, external_id="s-1", patient=patient,
        encounter=encounter, unit="MICU", bed="3", scored_at=now, risk=0.7, margin=0.85, tier="high",
        features={"lactate": {"value": 4.2}}, payload_sha256="d" * 64,
    )  # fmt: skip
    old.get_model("explanations", "Explanation").objects.create(prediction=prediction, status="ready")
    alert = old.get_model("explanations", "Alert").objects.create(
        prediction=prediction, patient=patient, unit="MICU", tier="high", risk=0.7
    )
    old.get_model("explanations", "CurrentScore").objects.create(
        patient=patient, prediction=prediction, scored_at=now, unit="MICU", bed="3", tier="high", risk=0.7,
        alert=alert, alerted_at=now,
    )  # fmt: skip
    old.get_model("explanations", "Outcome").objects.create(encounter=encounter, outcome=True)
    old.get_model("clinician_ui", "AlertView").objects.create(alert=alert, user=nurse)
    old.get_model("clinician_ui", "AlertAction").objects.create(
        alert=alert, user=nurse, role="clinician", action="accept", reason="treatment_changed",
        shown_at=now, seconds_to_decision=42.0, idempotency_key="k-1",
    )  # fmt: skip
    old.get_model("clinician_ui", "AuditEvent").objects.create(
        user=nurse, patient=patient, prediction=prediction, action="score_page", path="/scores/1/"
    )

    migrator.apply_tested_migration(migrator._executor.loader.graph.leaf_nodes())

    from accounts.models import ApiToken, Profile, ServiceToken
    from common.models import AppendOnlyError
    from explanations.models import Explanation
    from patients.models import Alert, AlertAction, AlertView, AuditEvent, CurrentScore, Outcome, Prediction

    moved = Prediction.objects.select_related("patient", "encounter", "model_version").get(external_id="s-1")
    assert (moved.pk, moved.patient.external_id, moved.encounter.external_id) == (prediction.pk, "p-1", "e-1")
    assert moved.features == {"lactate": {"value": 4.2}} and moved.model_version.pk == version.pk
    assert Explanation.objects.get(prediction=moved).status == "ready"
    moved_alert = Alert.objects.get(prediction=moved)
    assert moved_alert.pk == alert.pk and moved_alert.patient_id == patient.pk
    assert CurrentScore.objects.get(patient_id=patient.pk).alert_id == alert.pk
    assert Outcome.objects.get(encounter_id=encounter.pk).outcome is True
    assert AlertView.objects.get(alert=moved_alert).user_id == nurse.pk
    action = AlertAction.objects.get(alert=moved_alert)
    assert (action.action, action.seconds_to_decision, action.user_id) == ("accept", 42.0, nurse.pk)
    event = AuditEvent.objects.get(prediction=moved)
    assert (event.patient_id, event.action) == (patient.pk, "score_page")
    assert Profile.objects.get(user_id=nurse.pk).units == ["MICU"]
    assert ServiceToken.objects.get().name == "scorer" and ApiToken.objects.get().prefix == "efgh"
    # The moved records are still append-only.
    with pytest.raises(AppendOnlyError):
        action.save()
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.filter(pk=event.pk).delete()
    # And the database still refuses an alert of a prediction that does not exist (the key is kept).
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        Alert.objects.create(prediction_id=999_999, patient_id=patient.pk, unit="MICU", tier="high", risk=0.9)


@pytest.mark.django_db(transaction=True)
def test_actioned_alerts_get_the_state_of_their_latest_action(migrator):
    """patients 0005: "actioned" splits into accepted, escalated and dismissed by each alert's latest
    action (an earlier action never decides); new and acknowledged alerts keep their state."""
    from datetime import timedelta

    from django.utils import timezone

    old = migrator.apply_initial_migration([("patients", "0004_audit_event_patients_rows")]).apps
    User = old.get_model("auth", "User")
    nurse = User.objects.create(username="nurse", password="!")
    model = old.get_model("models_registry", "RegisteredModel").objects.create(name="sepsis", horizon_hours=6)
    version = old.get_model("models_registry", "ModelVersion").objects.create(
        registered_model=model, version=1, status="production", model_format="xgboost", spec={},
        tier_high=0.5, tier_medium=0.25, artifacts={}, bundle_sha256="c" * 64, background_size=10,
        reference_size=10,
    )  # fmt: skip
    Patient, Prediction = old.get_model("patients", "Patient"), old.get_model("patients", "Prediction")
    Alert, Action = old.get_model("patients", "Alert"), old.get_model("patients", "AlertAction")
    Encounter = old.get_model("patients", "Encounter")
    now = timezone.now()
    expected = {}
    cases = {
        "accepted": ("actioned", ["dismiss", "accept"]),
        "escalated": ("actioned", ["escalate"]),
        "dismissed": ("actioned", ["acknowledge", "accept", "dismiss"]),
        "acknowledged": ("acknowledged", ["acknowledge"]),
        "new": ("new", []),
    }
    for n, (want, (stored, actions)) in enumerate(cases.items()):
        patient = Patient.objects.create(external_id=f"p-{n}", unit="MICU")
        encounter = Encounter.objects.create(external_id=f"e-{n}", patient=patient)
        prediction = Prediction.objects.create(
            registered_model=model, model_version=version, external_id=f"s-{n}", patient=patient,
            encounter=encounter, unit="MICU", scored_at=now, risk=0.7, margin=0.85, tier="high",
            features={}, payload_sha256="d" * 64,
        )  # fmt: skip
        alert = Alert.objects.create(
            prediction=prediction, patient=patient, unit="MICU", tier="high", risk=0.7
        )
        Alert.objects.filter(pk=alert.pk).update(state=stored)
        for k, action in enumerate(actions):
            record = Action.objects.create(
                alert=alert, user=nurse, role="clinician", action=action, reason="r", shown_at=now,
                seconds_to_decision=1.0, idempotency_key=f"k-{n}-{k}",
            )  # fmt: skip
            Action.objects.filter(pk=record.pk).update(acted_at=now + timedelta(minutes=k))
        expected[alert.pk] = want

    new = migrator.apply_tested_migration([("patients", "0005_alert_states_distinct")]).apps
    states = dict(new.get_model("patients", "Alert").objects.values_list("pk", "state"))
    assert states == expected
