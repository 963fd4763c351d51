"""The EHR side of the Django admin: admins manage practitioner mappings (audited); a mapping never
changes what its user may see or do; registered EHRs are read-only there."""

from __future__ import annotations

from accounts import permissions
from interop.models import PractitionerMapping
from patients.models import AuditEvent


def test_an_admin_maps_a_practitioner_audited_without_granting_rights(charlie_client, ehr, alice):
    response = charlie_client.post(
        "/admin/interop/practitionermapping/add/",
        {"ehr": ehr.pk, "fhir_user": "Practitioner/777", "user": alice.pk},
    )
    assert response.status_code == 302, response.content[:500]
    mapping = PractitionerMapping.objects.get()
    assert (mapping.fhir_user, mapping.user) == ("Practitioner/777", alice)
    event = AuditEvent.objects.get(action="add_practitioner_mapping")
    assert event.user.username == "charlie"
    assert f"Practitioner/777 @ {ehr.iss} -> alice" in event.path
    alice.refresh_from_db()
    assert (alice.is_staff, alice.is_superuser, permissions.user_role(alice)) == (False, False, "clinician")
    assert permissions.visible_units(alice) == ["MICU"]


def test_a_clinician_cannot_reach_the_mappings(alice_client, ehr):
    response = alice_client.get("/admin/interop/practitionermapping/")
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


def test_registered_ehrs_are_read_only_in_the_admin(charlie_client, ehr):
    assert charlie_client.get("/admin/interop/registeredehr/add/").status_code == 403
    response = charlie_client.post(
        f"/admin/interop/registeredehr/{ehr.pk}/change/", {"iss": "https://x/fhir"}
    )
    assert response.status_code == 403
    ehr.refresh_from_db()
    assert ehr.iss != "https://x/fhir"


def test_an_admin_account_cannot_be_mapped(charlie_client, ehr, charlie):
    response = charlie_client.post(
        "/admin/interop/practitionermapping/add/",
        {"ehr": ehr.pk, "fhir_user": "Practitioner/1", "user": charlie.pk},
    )
    assert response.status_code == 200 and b"nothing coming from an EHR" in response.content
    assert not PractitionerMapping.objects.exists()


def test_a_mapping_to_an_admin_made_elsewhere_is_ignored(cds, ehr, charlie, production_version):
    """Mapped outside the admin form (a shell, a migration): still no card, no launch as an admin."""
    from interop.cds_service import practitioner_user

    PractitionerMapping.objects.create(ehr=ehr, fhir_user="Practitioner/1", user=charlie)
    assert practitioner_user(ehr, "Practitioner/1") is None
