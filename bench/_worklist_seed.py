"""The steps of bench/worklist.py's seeding: synthetic patients, their predictions (COPY), the
alerts ingest would have made and the current scores' explanations. Django must be set up first."""

from __future__ import annotations

import io
import json
import time

COPY_ROWS = 100_000

PREDICTION_COLUMNS = (
    "registered_model_id, model_version_id, external_id, patient_id, unit, bed, scored_at, risk, "
    "margin, tier, features, payload_sha256, source, simulated, received_at"
)


def seed_patients(patients: int, *, units: list[str]) -> list[tuple[int, str, str]]:
    """The synthetic patients over the units; their (id, unit, bed) in id order."""
    from patients.models import Patient

    Patient.objects.bulk_create(
        [
            Patient(
                external_id=f"bench-{i:05d}",
                display_name=f"Synthetic bench patient {i:05d}",
                unit=units[i % len(units)],
                bed=str(1 + i // len(units) % 40),
                simulated=True,
            )
            for i in range(patients)
        ],
        batch_size=2000,
    )
    return list(Patient.objects.order_by("id").values_list("id", "unit", "bed"))


def _features_copy_text() -> str:
    """The features column of every synthetic prediction, escaped for COPY's text format."""
    return json.dumps(
        {
            "age": {"value": 67},
            "lactate": {"value": 2.4, "unit": "mmol/L"},
            "map": {"value": 66.0, "unit": "mmHg"},
            "creatinine": {"value": 1.1, "unit": "mg/dL"},
            "urine_output": {"value": None},
            "ventilated": {"value": 0},
        }
    ).replace("\\", "\\\\")


def _patient_risks(rng, *, p_index: int, alerting: bool, per_patient: int):
    """Hourly scores, newest last; historical risks mostly low with some alert-tier scores."""
    import numpy as np

    risks = np.clip(rng.beta(1.6, 6.0, size=per_patient), 0.01, 0.99)
    if alerting:
        risks[-1] = rng.uniform(0.5, 0.95) if p_index % 3 == 0 else rng.uniform(0.25, 0.5)
    else:
        risks[-1] = rng.uniform(0.01, 0.24)
    return risks


def _prediction_copy_line(
    *, rm: int, mv: int, run: int, patient: tuple, risk: float, scored: float, features: str
) -> str:
    """One prediction row in COPY's text format, in the order of PREDICTION_COLUMNS."""
    import numpy as np

    patient_id, unit, bed = patient
    tier = "high" if risk >= 0.5 else "medium" if risk >= 0.25 else "low"
    return (
        f"{rm}\t{mv}\tbench-run-{run}/{patient_id}\t{patient_id}\t{unit}\t{bed}\t"
        f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(scored))}+00\t{risk:.6f}\t"
        f"{np.log(risk / (1 - risk)):.6f}\t{tier}\t{features}\t{'0' * 64}\tbulk\tt\t"
        f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(scored + 30))}+00\n"
    )


def copy_predictions(
    cursor,
    rng,
    *,
    version,
    patient_rows: list,
    alerting: set,
    per_patient: int,
    total: int,
    now,
    started: float,
) -> None:
    """Every patient's scores, written with COPY in chunks of COPY_ROWS rows."""
    from patients.models import Prediction

    table = Prediction._meta.db_table
    features = _features_copy_text()
    buffer = io.StringIO()
    written = 0
    rm, mv = version.registered_model_id, version.pk
    for p_index, patient in enumerate(patient_rows):
        risks = _patient_risks(rng, p_index=p_index, alerting=p_index in alerting, per_patient=per_patient)
        for k in range(per_patient):
            scored = now.timestamp() - (per_patient - k) * 3600 - 600
            buffer.write(
                _prediction_copy_line(
                    rm=rm,
                    mv=mv,
                    run=k,
                    patient=patient,
                    risk=float(risks[k]),
                    scored=scored,
                    features=features,
                )
            )
            written += 1
            if written % COPY_ROWS == 0 or written == total:
                buffer.seek(0)
                cursor.copy_expert(f"COPY {table} ({PREDICTION_COLUMNS}) FROM STDIN", buffer)
                buffer = io.StringIO()
                print(
                    f"  predictions: {written:,} of {total:,} ({time.perf_counter() - started:.0f} s)",
                    flush=True,
                )


def insert_alerts(cursor, *, started: float) -> None:
    """Every medium/high score has its alert, as ingest makes them; most historical ones were
    acted on, the active ones are in every state."""
    from patients.models import Alert, Prediction

    table = Prediction._meta.db_table
    cursor.execute(
        f"INSERT INTO {Alert._meta.db_table} "  # noqa: S608 - table names from the models
        "(prediction_id, patient_id, unit, tier, risk, state, created_at) "
        "SELECT id, patient_id, unit, tier, risk, CASE WHEN id % 3 = 0 THEN 'new' WHEN id % 3 = 1 "
        f"THEN 'acknowledged' ELSE 'accepted' END, scored_at + interval '1 minute' FROM {table} "
        "WHERE tier IN ('medium', 'high')"
    )
    print(f"  alerts: {cursor.rowcount:,} ({time.perf_counter() - started:.0f} s)", flush=True)


def explain_current_scores() -> None:
    """The current scores have ready explanations (the alert page reads them)."""
    from django.db import transaction

    from explanations.models import Explanation
    from patients.models import Prediction
    from tests.fixtures.factories import contributions_for

    with transaction.atomic():
        current = Prediction.objects.filter(current_for__isnull=False).only("id", "risk")
        Explanation.objects.bulk_create(
            [
                Explanation(
                    prediction_id=p.pk,
                    status=Explanation.Status.READY,
                    base_value=-1.2,
                    contributions=contributions_for(p.risk),
                    additivity_error=0.0,
                    background_size=200,
                )
                for p in current
            ],
            batch_size=2000,
        )
