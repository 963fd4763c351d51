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
