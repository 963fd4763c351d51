"""Pen test finding 3: the Django admin could rewrite clinical records. A superuser moved a
NEURO-ICU alert into MICU's view, deleted an unviewed high alert, and listed 100 patients with no
audit record. Every clinical record is read-only there now, and every look at one is audited."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from patients.models import Alert, AuditEvent, Patient
from tests.fixtures.factories import prediction_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def superuser_client():
    user = get_user_model().objects.create_superuser("root", "root@example.org", "a long admin passphrase")
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def alert(ui_model_version):
    return prediction_create(model_version=ui_model_version, unit="NEURO-ICU", risk=0.91).alert


def test_a_superuser_cannot_change_or_delete_an_alert_in_the_admin(superuser_client, alert):
    url = f"/admin/patients/alert/{alert.pk}/change/"
    page = superuser_client.get(url)
    assert page.status_code == 200 and b'name="unit"' not in page.content  # shown, not editable

    posted = superuser_client.post(url, {"unit": "MICU", "tier": "low", "risk": "0.01", "state": "dismissed"})
    assert posted.status_code == 403
    deleted = superuser_client.post(f"/admin/patients/alert/{alert.pk}/delete/", {"post": "yes"})
    assert deleted.status_code == 403
    # No bulk "delete selected" either.
    listed = superuser_client.get("/admin/patients/alert/")
    assert b"delete_selected" not in listed.content

    alert.refresh_from_db()
    assert (alert.unit, alert.tier, alert.state) == ("NEURO-ICU", "high", Alert.State.NEW)


@pytest.mark.parametrize("model", ["patient", "encounter", "prediction", "outcome", "alertaction"])
def test_no_clinical_record_can_be_added_in_the_admin(superuser_client, alert, model):
    assert superuser_client.get(f"/admin/patients/{model}/add/").status_code == 403
    assert superuser_client.get("/admin/explanations/explanation/add/").status_code == 403


def test_every_admin_look_at_patient_data_is_audited(superuser_client, alert):
    superuser_client.get("/admin/patients/patient/")
    listed = AuditEvent.objects.get(action="admin_list_patient")
    assert listed.user.username == "root"
    assert "[1 of 1 rows]" in listed.path
    assert (listed.patients, listed.rows) == ([alert.patient.external_id], 1)

    superuser_client.get(f"/admin/patients/prediction/{alert.prediction_id}/change/")
    viewed = AuditEvent.objects.get(action="admin_view_prediction")
    assert (viewed.patient_id, viewed.prediction_id) == (alert.patient_id, alert.prediction_id)

    explanation = alert.prediction.explanation
    superuser_client.get(f"/admin/explanations/explanation/{explanation.pk}/change/")
    assert AuditEvent.objects.get(action="admin_view_explanation").patient_id == alert.patient_id
    assert Patient.objects.count() == 1
