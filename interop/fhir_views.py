"""FHIR R4 endpoints (CONTRACT.md section 5). Every error is a FHIR OperationOutcome.

Who may call them:
- `GET /fhir/RiskAssessment/{id}`: a logged-in person (session), through the same access helper as
  every patient page (another unit's patient answers 404), and the read is audited. A scoring-service
  token gets 403: service tokens are ingest-only (CONTRACT.md section 6) and see no patient.
- `POST /fhir/`: a scoring-service token only, like `POST /api/v1/predictions/`. The response carries
  the RiskAssessment of what the service just posted (as the REST ingest returns risk and tier).
"""

from django.http import Http404
from django.utils import timezone
from rest_framework import exceptions, status
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import SCOPE_PATIENT_DATA, IsServiceToken, is_service, may_read_patient_data
from explanations.services import prediction_ingest
from patients import access
from sightline.api_errors import ApiError
from sightline.parsers import StrictJSONParser

from . import fhir_bundle, fhir_resources

ISSUE_BY_STATUS = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    409: "conflict",
    422: "business-rule",
}


class FhirJSONParser(StrictJSONParser):
    """FHIR JSON, read as strictly as the API's JSON: a 100,000-deep array is a 400, not a 500."""

    media_type = "application/fhir+json"


class FhirJSONRenderer(JSONRenderer):
    media_type = "application/fhir+json"
    format = "fhir"


class FhirView(APIView):
    # FHIR resources are described by FHIR itself, not by the OpenAPI schema of /api/v1/.
    schema = None
    parser_classes = [FhirJSONParser, StrictJSONParser]
    renderer_classes = [FhirJSONRenderer, JSONRenderer]

    def handle_exception(self, exc):
        if isinstance(exc, fhir_resources.FhirError):
            return Response(fhir_resources.error_outcome(exc), status=exc.status)
        if isinstance(exc, Http404):
            error = fhir_resources.FhirError(404, "not-found", str(exc) or "Not found.")
            return Response(fhir_resources.error_outcome(error), status=404)
        if isinstance(exc, exceptions.APIException):
            code = exc.status_code
            if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
                code = status.HTTP_401_UNAUTHORIZED
            detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
            error = fhir_resources.FhirError(code, ISSUE_BY_STATUS.get(code, "processing"), detail)
            response = Response(fhir_resources.error_outcome(error), status=code)
            if code == 401:
                response["WWW-Authenticate"] = 'Token realm="api"'
            return response
        return super().handle_exception(exc)


class RiskAssessmentView(FhirView):
    def get(self, request, pk: int):
        if is_service(request.user):
            raise fhir_resources.FhirError(
                403,
                "forbidden",
                "Scoring-service tokens post predictions; they do not read patients' records.",
            )
        if not may_read_patient_data(request.user):
            raise fhir_resources.FhirError(
                403,
                "forbidden",
                f"This API token lacks the '{SCOPE_PATIENT_DATA}' scope (create_api_token --scope).",
            )
        prediction = access.prediction_for_user(request.user, pk, request=request)
        access.audit_view(request._request, action="fhir_risk_assessment", prediction=prediction)
        return Response(fhir_resources.risk_assessment(prediction))


class TransactionView(FhirView):
    permission_classes = [IsServiceToken]

    def post(self, request):
        data = request.data
        bundle = fhir_bundle.bundle_parse(data)
        version = fhir_bundle.version_for(request.query_params.get("model"))
        mapped = fhir_bundle.bundle_to_payload(
            bundle, version=version, body_sha256=fhir_bundle.body_sha256(data), received_at=timezone.now()
        )
        try:
            result = prediction_ingest(payload=mapped.payload, source="fhir")
        except ApiError as exc:
            raise _as_fhir_error(exc, mapped) from None
        prediction = (
            type(result.prediction)
            .objects.select_related("patient", "encounter", "model_version__registered_model")
            .get(pk=result.prediction.pk)
        )
        return Response(
            fhir_bundle.transaction_response(mapped, prediction, result.created), status=status.HTTP_200_OK
        )


def _as_fhir_error(exc: ApiError, mapped: fhir_bundle.MappedBundle) -> fhir_resources.FhirError:
    """An ingest error, pointed at the Observation (or resource) it came from."""
    expression = []
    for name in exc.fields:
        parts = name.split(".")
        if parts[0] == "features" and len(parts) > 1 and parts[1] in mapped.feature_paths:
            expression.append(mapped.feature_paths[parts[1]])
        elif parts[0] in ("patient", "encounter_id"):
            expression.append("Bundle.entry")
    code = ISSUE_BY_STATUS.get(exc.status_code, "processing")
    return fhir_resources.FhirError(exc.status_code, code, str(exc.detail), sorted(set(expression)))
