"""Concurrent bulk requests over the same new patients, in opposite orders, never deadlock.

Found by bench/load.py: two bulk requests inserting the same new patients in different orders
deadlocked in PostgreSQL and one answered 503. Items are now stored in patient order.
"""

import threading

import pytest
from django.db import connection

from explanations.services import prediction_ingest_many
from patients.models import Patient, Prediction

pytestmark = pytest.mark.django_db(transaction=True)


def test_bulk_requests_over_the_same_patients_in_opposite_orders_all_store(postgres, prediction_payload):
    patients = [f"CONC-{n:03d}" for n in range(40)]
    rounds = 2

    def batch(tag: str, order: list[str]) -> list[dict]:
        payloads = []
        for n, patient_id in enumerate(order):
            payload = prediction_payload(n % prediction_payload.count, external_id=f"{tag}/{patient_id}")
            payload["patient"]["id"] = patient_id
            payload["encounter_id"] = f"ENC-{patient_id}"
            payloads.append(payload)
        return payloads

    errors: list = []

    def run(tag: str, order: list[str], barrier: threading.Barrier) -> None:
        try:
            barrier.wait()
            for result in prediction_ingest_many(payloads=batch(tag, order), source="bulk"):
                if isinstance(result, Exception):
                    errors.append(result)
        except Exception as exc:  # a deadlock surfaces here as an OperationalError
            errors.append(exc)
        finally:
            connection.close()

    for round_number in range(rounds):
        fresh = [f"{p}-{round_number}" for p in patients]
        barrier = threading.Barrier(2, timeout=30)
        threads = [
            threading.Thread(target=run, args=(f"up{round_number}", fresh, barrier)),
            threading.Thread(target=run, args=(f"down{round_number}", fresh[::-1], barrier)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)

    assert errors == []
    assert Prediction.objects.count() == 2 * len(patients) * rounds
    assert Patient.objects.count() == len(patients) * rounds
