"""Every URL in the URLconf, walked as every role, against an explicit table of expected answers.

Roles: anonymous, alice (clinician, MICU), bob (clinician, CCU), charlie (admin), auditor, and the
scoring-service token. URL parameters are filled with real objects: a MICU patient's prediction and
alert, a CCU patient's, the registered model's name and version, a cohort job, and one row of each
model the Django admin manages.

On top of the table, for every answer: never a 5xx; an API error is the contract's JSON shape; and a
patient's name and id never appear in anything sent to someone who may not see that patient's unit
(bob never receives the MICU patient, alice never the CCU one, anonymous and the service token
neither).

The table of expected answers is tests/access_table.py; a URL pattern without an entry there fails
`test_every_url_has_an_expectation` (tests/test_access_table.py): a new endpoint is walked only once
someone has written down who may reach it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.core.cache import cache
from django.test import Client

from accounts.tokens import api_token_create
from explanations.models import CohortJob
from patients.models import Patient, Prediction
from tests.access_table import (
    ADMIN_CATCH_ALL,
    ADMIN_LOGIN,
    LOGIN,
    PATIENTS,
    ROLES,
    SEES,
    Route,
    expectation_for,
    url_routes,
)
from tests.fixtures.factories import ehr_rows_create

# --- the world the walk sees -----------------------------------------------------------------


@dataclass
class World:
    clients: dict[str, Client]
    prediction: dict[str, Prediction]  # unit -> a prediction with an alert
    alert: dict[str, int]
    model_name: str
    model_version: int
    job_id: int
    admin_objects: dict[str, str]  # "app.model" -> pk to use
    user_ids: dict[str, int]
    patient_ct: int


@pytest.fixture
def world(
    alice, bob, charlie, auditor, alice_client, bob_client, charlie_client, auditor_client,
    service_client, service_token, model_version, prediction_payload,
) -> World:  # fmt: skip
    cache.clear()  # throttle counters of earlier tests
    predictions, alerts = {}, {}
    for unit, patient in PATIENTS.items():
        for index in range(prediction_payload.count):
            payload = prediction_payload(index, external_id=f"walk-{unit}-{index}", patient=patient)
            payload["encounter_id"] = f"E-{unit}-{index}"
            body = service_client.post("/api/v1/predictions/", payload, format="json").json()
            if body.get("alert"):
                predictions[unit] = Prediction.objects.get(pk=body["id"])
                alerts[unit] = body["alert"]["id"]
                break
        assert unit in alerts, f"no demo payload raised an alert for {unit}"
    # An outcome for the MICU encounter, an action on the MICU alert, a group: one row of each.
    service_client.post(
        "/api/v1/outcomes/", {"encounter_id": predictions["MICU"].encounter.external_id, "outcome": True},
        format="json",
    )  # fmt: skip
    alice_client.post(
        f"/api/v1/alerts/{alerts['MICU']}/actions/",
        {"action": "dismiss", "reason": "already_aware", "comment": "seed"},
        content_type="application/json",
    )
    Group.objects.create(name="walkers")
    ehr_rows_create(alice=alice, prediction=predictions["MICU"])
    job = CohortJob.objects.create(version=model_version, chunk_size=100)
    api_token_create(user=charlie, name="walk")  # the token admin lists it (read only)

    admin_objects = {}
    for model in admin.site._registry:
        label = f"{model._meta.app_label}.{model._meta.model_name}"
        if model is Patient:
            obj = Patient.objects.get(external_id=PATIENTS["MICU"]["id"])
        else:
            obj = model._default_manager.order_by("pk").first()
        admin_objects[label] = str(obj.pk) if obj is not None else "999999"

    token_client = Client(HTTP_AUTHORIZATION=f"Token {service_token}")
    return World(
        clients={
            "anonymous": Client(),
            "alice": alice_client,
            "bob": bob_client,
            "charlie": charlie_client,
            "auditor": auditor_client,
            "service": token_client,
        },
        prediction=predictions,
        alert=alerts,
        model_name=model_version.registered_model.name,
        model_version=model_version.version,
        job_id=job.pk,
        admin_objects=admin_objects,
        user_ids={"alice": alice.pk},
        patient_ct=ContentType.objects.get_for_model(Patient).pk,
    )


def fill(route: Route, world: World, unit: str) -> str:
    """The route with its parameters replaced by the objects of `unit`'s patient."""
    label = None
    match = re.match(r"admin/(\w+)/(\w+)/", route.route)
    if match:
        label = f"{match.group(1)}.{match.group(2)}"
    prediction = world.prediction[unit]
    values: dict[str, Callable[[], str]] = {
        "prediction_id": lambda: str(prediction.pk),
        "pk": lambda: str(prediction.pk),
        "alert_id": lambda: str(world.alert[unit]),
        "job_id": lambda: str(world.job_id),
        "name": lambda: world.model_name,
        "version": lambda: str(world.model_version),
        "object_id": lambda: world.admin_objects.get(label, "999999"),
        "id": lambda: str(world.user_ids["alice"]),
        "content_type_id": lambda: str(world.patient_ct),
        "app_label": lambda: "explanations",
        "url": lambda: "no-such-page/",
        "service_id": lambda: world.model_name,
    }
    path = route.route
    if path.startswith("admin/^"):  # the app index: a regex
        return "/admin/explanations/"
    if path == ADMIN_CATCH_ALL:
        return "/admin/no-such-page/"
    path = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: values[m.group(1)](), path)
    return "/" + path


# --- checking answers ------------------------------------------------------------------------


def body_of(response) -> bytes:
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content)
    return response.content


def resolve_expected(table: dict, role: str, unit: str, *, per_patient: bool):
    if role in table:
        return table[role]
    if per_patient and role in SEES:
        own = unit in SEES[role]
        if own and role in ("alice", "bob") and "own-clinician" in table:
            return table["own-clinician"]
        return table["own" if own else "other"]
    raise KeyError(role)


def matches(response, expected) -> bool:
    if expected == LOGIN:
        return response.status_code == 302 and response["Location"].startswith("/login/")
    if expected == ADMIN_LOGIN:
        return response.status_code == 302 and response["Location"].startswith("/admin/login/")
    allowed = expected if isinstance(expected, set) else {expected}
    return response.status_code in allowed


def check_invariants(response, body: bytes, *, role: str, path: str, failures: list[str]) -> None:
    if response.status_code >= 500:
        failures.append(f"{role} {path}: {response.status_code}")
    # A patient's name and id reach only people who see the patient's unit.
    for unit, patient in PATIENTS.items():
        if role in SEES and unit in SEES[role]:
            continue
        for secret in (patient["id"], patient["display_name"]):
            if secret.encode() in body or json.dumps(secret)[1:-1].encode() in body:
                failures.append(f"{role} {path}: received {unit} patient's {secret!r}")
    # API errors are the contract's JSON (FHIR's are OperationOutcomes).
    if path.startswith("/api/") and response.status_code >= 400:
        try:
            data = json.loads(body)
        except ValueError:
            failures.append(f"{role} {path}: {response.status_code} error is not JSON")
            return
        if not {"error", "detail"} <= set(data):
            failures.append(f"{role} {path}: {response.status_code} error lacks error/detail: {data}")
    is_fhir_error = path.startswith("/fhir/") and response.status_code >= 400
    if is_fhir_error and json.loads(body).get("resourceType") != "OperationOutcome":
        failures.append(f"{role} {path}: FHIR error is not an OperationOutcome")


def test_every_url_as_every_role(world, settings):
    failures: list[str] = []
    walked = 0
    for route in url_routes():
        expect = expectation_for(route)
        assert expect is not None, route
        has_object = bool(re.search(r"<(?:\w+:)?(prediction_id|alert_id|pk)>", route.route))
        units = ("MICU", "CCU") if has_object else ("MICU",)
        for unit in units:
            path = fill(route, world, unit)
            if expect.query:
                path += "?" + expect.query.format(model=world.model_name)
            for role in ROLES:
                client = world.clients[role]
                try:
                    wanted = resolve_expected(expect.get, role, unit, per_patient=expect.per_patient)
                except KeyError:
                    failures.append(f"{route.route}: no GET expectation for {role}")
                    continue
                response = client.get(path)
                body = body_of(response)
                walked += 1
                if not matches(response, wanted):
                    failures.append(f"GET {path} as {role}: {response.status_code}, expected {wanted}")
                check_invariants(response, body, role=role, path=path, failures=failures)
                if expect.post is None:
                    continue
                try:
                    wanted = resolve_expected(expect.post, role, unit, per_patient=expect.per_patient)
                except KeyError:
                    continue  # a POST this table does not test for this role
                response = client.post(path, expect.post_body, content_type="application/json")
                body = body_of(response)
                if not matches(response, wanted):
                    failures.append(
                        f"POST {path} as {role}: {response.status_code}, expected {wanted}: {body[:200]!r}"
                    )
                check_invariants(response, body, role=role, path=path, failures=failures)
    assert not failures, "\n".join(failures)
    assert walked > 6 * 100  # every role, every pattern (with both patients where there is one)


def test_the_walk_would_see_a_leak(world):
    """The name check is not vacuous: the people who may see a patient do receive the name."""
    assert PATIENTS["MICU"]["display_name"].encode() in body_of(world.clients["alice"].get("/"))
    assert PATIENTS["CCU"]["display_name"].encode() in body_of(world.clients["bob"].get("/"))
    assert PATIENTS["MICU"]["display_name"].encode() not in body_of(world.clients["bob"].get("/"))
    alert = world.alert["MICU"]
    assert PATIENTS["MICU"]["id"].encode() in body_of(world.clients["auditor"].get(f"/alerts/{alert}/"))
