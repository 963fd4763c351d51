"""The API against its own OpenAPI schema, through the live server (schemathesis + Hypothesis).

Every operation of /api/schema/ is called with generated requests, as the caller it is meant for
(the scoring-service token for ingest and outcomes, an admin's session for everything else, with
a CSRF token so writes reach the view): no answer is a 5xx, and every answer's status, content type
and body are the ones the schema documents. Bounded: MAX_EXAMPLES per operation, no shrinking
beyond Hypothesis's defaults, about a minute in all.
"""

import pytest
import requests
import schemathesis
from django.middleware.csrf import _get_new_csrf_string
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from patients.models import Alert

MAX_EXAMPLES = 25
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
SERVICE_PATHS = ("/api/v1/predictions/", "/api/v1/predictions/bulk/", "/api/v1/outcomes/")


def property_test(
    operation, mode: GenerationMode, *, base_url: str, headers: dict, statuses: list[int], path: dict
):
    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=path))
    @hypothesis_settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case):
        response = case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS, timeout=30)
        statuses.append(response.status_code)

    return run


@pytest.mark.schemathesis
@pytest.mark.django_db(transaction=True)
def test_every_operation_conforms_to_the_schema(
    model_version, prediction_payload, service_token, charlie, charlie_client, settings, live_server
):
    # live_server last: set up after the test database, so it is stopped (and its connection
    # closed) before the database is dropped.
    from django.core.cache import cache

    cache.clear()
    # Real rows: valid requests (positive mode) address these; invalid ones (negative) any id.
    token_headers = {"Authorization": f"Token {service_token}"}
    for index in range(6):
        ingest = requests.post(
            f"{live_server.url}/api/v1/predictions/",
            json=prediction_payload(index),
            headers=token_headers,
            timeout=30,
        )
        assert ingest.status_code == 201, ingest.text
    alert = Alert.objects.order_by("pk").first()
    assert alert is not None
    real = {
        "prediction_id": alert.prediction_id,
        "alert_id": alert.pk,
        "name": model_version.registered_model.name,
        "version": model_version.version,
    }

    csrf = _get_new_csrf_string()
    session = charlie_client.cookies[settings.SESSION_COOKIE_NAME].value
    admin_headers = {"Cookie": f"sessionid={session}; csrftoken={csrf}", "X-CSRFToken": csrf}

    schema = schemathesis.openapi.from_url(f"{live_server.url}/api/schema/?format=json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {
        "/api/v1/predictions/",
        "/api/v1/predictions/bulk/",
        "/api/v1/outcomes/",
        "/api/v1/predictions/{prediction_id}/explanation/",
        "/api/v1/alerts/{alert_id}/actions/",
        "/api/v1/exports/overrides/",
        "/api/v1/models/",
        "/api/v1/models/{name}/versions/{version}/card/",
    }

    failures, unauthorised = [], []
    for operation in operations:
        headers = token_headers if operation.path in SERVICE_PATHS else admin_headers
        label = f"{operation.method.upper()} {operation.path}"
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            statuses: list[int] = []
            path = {}
            if mode is GenerationMode.POSITIVE:
                path = {p.name: real[p.name] for p in operation.path_parameters if p.name in real}
            run = property_test(
                operation, mode, base_url=live_server.url, headers=headers, statuses=statuses, path=path
            )
            try:
                run()
            except Unsatisfiable:
                # Nothing to make invalid: an operation without parameters or body (negative mode).
                assert mode is GenerationMode.NEGATIVE, label
            except (Exception, BaseExceptionGroup) as exc:  # every operation's failures, reported together
                failures.append(f"{label} ({mode.value}):\n{exc}")
            # The caller reached the view: the run tested the endpoint, not only its login check.
            if statuses and set(statuses) <= {401, 403}:
                unauthorised.append(f"{label} ({mode.value}): only {sorted(set(statuses))}")
    assert not failures, "\n\n".join(failures)
    assert not unauthorised, unauthorised
