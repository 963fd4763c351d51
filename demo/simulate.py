"""A synthetic scoring run resampled from the RHC demo cohort, stored straight in the database.

For benchmarks and cohort tests that need many predictions quickly: rows of the RHC scoring split
are drawn with replacement (seeded), each becomes a simulated patient and prediction (labelled
simulated, scored by the registered model), with no explanation queued.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
from django.db import transaction

from explanations.services.current import patients_current_refresh
from models_registry.models import ModelVersion
from models_registry.serving import serving_model
from patients.models import Patient, Prediction

from . import rhc as demo_rhc

BATCH = 2000


def predictions_resampled_create(
    *, version: ModelVersion, n: int, seed: int = 0, run_at: datetime, prefix: str = "synthetic"
) -> int:
    """Create n simulated predictions of `version`; return how many were created."""
    serving = serving_model(version)
    scoring = demo_rhc.split_cohort(demo_rhc.load_cohort()).scoring
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(scoring), size=n)
    minutes = rng.integers(0, 7 * 24 * 60, size=n)
    names = serving.feature_names
    specs = {f.name: f for f in version.input_features()}
    created = 0
    for start in range(0, n, BATCH):
        rows = scoring.iloc[picks[start : start + BATCH]]
        matrix = rows[names].to_numpy(dtype=np.float64)
        margins = serving.predict_margin(matrix)
        risks = 1.0 / (1.0 + np.exp(-margins))
        with transaction.atomic():
            patients = Patient.objects.bulk_create(
                [
                    Patient(
                        external_id=f"{prefix}-{seed}-{start + i}",
                        display_name=f"Synthetic patient {start + i}",
                        unit=unit,
                        simulated=True,
                    )
                    for i, unit in enumerate(rows["unit"])
                ]
            )
            predictions = []
            for i, (patient, values) in enumerate(zip(patients, matrix, strict=True)):
                index = start + i
                features = {
                    name: {"value": _payload_value(specs[name], v)}
                    for name, v in zip(names, values, strict=True)
                }
                predictions.append(
                    Prediction(
                        registered_model=version.registered_model,
                        model_version=version,
                        external_id=f"{prefix}-{seed}-{index}",
                        patient=patient,
                        unit=patient.unit,
                        scored_at=run_at - timedelta(minutes=int(minutes[index])),
                        risk=float(risks[i]),
                        margin=float(margins[i]),
                        tier=version.tier_for(float(risks[i])),
                        features=features,
                        payload_sha256="0" * 64,
                        source=Prediction.Source.BULK,
                        simulated=True,
                    )
                )
            Prediction.objects.bulk_create(predictions)
            patients_current_refresh(patient_ids=[p.pk for p in patients])
        created += len(predictions)
    return created


def _payload_value(feature, encoded: float):
    """A model input as a payload value: null, a number, true/false, or a category."""
    if np.isnan(encoded):
        return None
    if feature.kind == "binary":
        return bool(encoded)
    if feature.kind == "categorical":
        return feature.categories[int(encoded)]
    return float(encoded)
