"""Writes: prediction ingest, outcomes, and the explanation computation (CONTRACT.md sections 2-3).

Errors are ApiError (sightline/api_errors.py) naming the field, so the REST, bulk and FHIR
entry points answer the same way. Choices the contract leaves open:

- an unknown `model` name, a pinned `model_version` that does not exist, or a model without a
  production version while none is pinned: 400 naming `model` / `model_version` (a bad
  reference inside the body, like DRF's "invalid pk"; the URL itself exists);
- a pinned version is used whatever its status (a scoring service may shadow-score a candidate);
- a `decision_time: false` feature carrying a non-null value is leakage (422); carrying null
  carries nothing and is ignored;
- a unit, when given, must equal the schema's unit exactly; an absent unit means the schema's;
- an `encounter_id` already known for another patient is a conflict (409 naming `encounter_id`).
"""

from .cohort import cohort_explanation_add, cohort_job_create, cohort_job_progress
from .cohort_job import cohort_chunk_compute, cohort_job_finalize, cohort_job_run
from .explanation_batch import explanations_backlog, explanations_compute_batch
from .explanations import (
    MAX_ATTEMPTS,
    explanation_compute,
    explanation_fail,
    explanations_enqueue,
    explanations_failed_retry,
    explanations_stuck_requeue,
)
from .ingest import prediction_ingest, prediction_ingest_many
from .outcomes import outcome_record
from .profiles import version_profile_build, version_profile_loaded
from .validation import IngestResult, payload_sha256
from .whatif import prediction_what_if

__all__ = [
    "MAX_ATTEMPTS",
    "IngestResult",
    "cohort_chunk_compute",
    "explanations_backlog",
    "explanations_compute_batch",
    "cohort_explanation_add",
    "cohort_job_create",
    "cohort_job_finalize",
    "cohort_job_progress",
    "cohort_job_run",
    "prediction_what_if",
    "version_profile_build",
    "version_profile_loaded",
    "explanation_compute",
    "explanation_fail",
    "explanations_enqueue",
    "explanations_failed_retry",
    "explanations_stuck_requeue",
    "outcome_record",
    "payload_sha256",
    "prediction_ingest",
    "prediction_ingest_many",
]
