"""A batch of explanations stored in one transaction: the cohort aggregates and samples it writes
in a few statements equal those of adding each explanation alone."""

import numpy as np
import pandas as pd
import pytest
from django.conf import settings

from engine import cohort
from explanations import services
from explanations.models import CohortAggregate, CohortJob, CohortSample, Explanation
from models_registry.serving import serving_model
from patients.models import Prediction

pytestmark = pytest.mark.django_db


def _pending(service_client, prediction_payload, count: int, prefix: str) -> list[Prediction]:
    payloads = []
    for i in range(count):
        payload = prediction_payload(i % prediction_payload.count, external_id=f"{prefix}-{i}")
        payload["patient"]["unit"] = ["MICU", "CCU"][i % 2]
        payloads.append(payload)
    response = service_client.post("/api/v1/predictions/bulk/", payloads, format="json")
    assert response.status_code == 200, response.content[:300]
    return list(Prediction.objects.filter(pk__in=[r["id"] for r in response.json()["results"]]))


def _expected(version) -> tuple[pd.DataFrame, dict]:
    """Aggregates and each slice's bottom-k prediction ids, computed directly from the stored
    ready explanations."""
    records, priorities = [], []
    for explanation in Explanation.objects.filter(
        prediction__model_version=version, status=Explanation.Status.READY
    ).select_related("prediction"):
        p = explanation.prediction
        shift, day = cohort.slice_of(p.scored_at, settings.HOSPITAL_TIME_ZONE)
        records += [
            {"feature": c["name"], "unit": p.unit, "shift": shift, "day": day, "v": c["shap"]}
            for c in explanation.contributions
        ]
        priorities.append(((p.unit, shift, day), cohort.priority(p.pk), p.pk))
    frame = pd.DataFrame(records).groupby(["feature", "unit", "shift", "day"])["v"]
    aggregates = pd.DataFrame(
        {"count": frame.size(), "total": frame.sum(), "total_abs": frame.apply(lambda v: v.abs().sum())}
    )
    samples: dict[tuple, set] = {}
    for key, _priority, pk in sorted(priorities):
        chosen = samples.setdefault(key, set())
        if len(chosen) < settings.COHORT_SAMPLE_SIZE:
            chosen.add(pk)
    return aggregates, samples


def test_a_stored_batch_counts_each_explanation_once_and_keeps_each_slices_bottom_k(
    service_client, prediction_payload, model_version, settings
):
    settings.COHORT_SAMPLE_SIZE = 4
    first = _pending(service_client, prediction_payload, 14, "first")
    assert services.explanations_compute_batch([p.explanation.pk for p in first]) == []
    # A second batch into the same slices: samples already full, so some rows push others out.
    second = _pending(service_client, prediction_payload, 20, "second")
    assert services.explanations_compute_batch([p.explanation.pk for p in second]) == []
    assert Explanation.objects.filter(status=Explanation.Status.READY).count() == 34

    aggregates, samples = _expected(model_version)
    stored = (
        pd.DataFrame(
            list(
                CohortAggregate.objects.filter(version=model_version).values(
                    "feature", "unit", "shift", "day", "count", "total", "total_abs"
                )
            )
        )
        .set_index(["feature", "unit", "shift", "day"])
        .sort_index()
    )
    assert list(stored.index) == list(aggregates.index)
    assert stored["count"].tolist() == aggregates["count"].tolist()
    assert sum(stored["count"]) == 34 * len(serving_model(model_version).feature_names)
    np.testing.assert_allclose(stored["total"], aggregates["total"], atol=1e-9)
    np.testing.assert_allclose(stored["total_abs"], aggregates["total_abs"], atol=1e-9)
    kept: dict[tuple, set] = {}
    for unit, shift, day, pk in CohortSample.objects.filter(version=model_version).values_list(
        "unit", "shift", "day", "prediction_id"
    ):
        kept.setdefault((unit, shift, day), set()).add(pk)
    assert kept == samples
    assert max(len(ids) for ids in kept.values()) == 4


def test_a_batch_leaves_out_the_predictions_a_recompute_job_already_counted(
    service_client, prediction_payload, model_version
):
    before = _pending(service_client, prediction_payload, 6, "before")
    CohortJob.objects.create(
        version=model_version,
        status=CohortJob.Status.DONE,
        chunk_size=2000,
        max_prediction_id=max(p.pk for p in before),
    )
    after = _pending(service_client, prediction_payload, 4, "after")

    assert services.explanations_compute_batch([p.explanation.pk for p in before + after]) == []

    assert Explanation.objects.filter(status=Explanation.Status.READY).count() == 10
    names = serving_model(model_version).feature_names
    counted = CohortAggregate.objects.filter(version=model_version)
    assert sum(counted.values_list("count", flat=True)) == 4 * len(names)
    assert set(CohortSample.objects.values_list("prediction_id", flat=True)) <= {p.pk for p in after}
