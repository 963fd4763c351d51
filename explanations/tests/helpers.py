"""Helpers shared by the explanations tests."""

from explanations.models import Explanation
from patients.models import Alert, Encounter, Patient, Prediction


def stored_counts() -> dict[str, int]:
    return {
        "predictions": Prediction.objects.count(),
        "explanations": Explanation.objects.count(),
        "alerts": Alert.objects.count(),
        "patients": Patient.objects.count(),
        "encounters": Encounter.objects.count(),
    }


NOTHING = {"predictions": 0, "explanations": 0, "alerts": 0, "patients": 0, "encounters": 0}


def ingest(service_client, payload, capture) -> Prediction:
    with capture(execute=True):
        response = service_client.post("/api/v1/predictions/", payload, format="json")
    assert response.status_code == 201, response.content
    return Prediction.objects.get(pk=response.json()["id"])
