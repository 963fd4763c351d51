"""Prediction, outcome and explanation API (CONTRACT.md sections 2 and 3). Views stay thin."""

from django.conf import settings
from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import IsPerson, IsServiceToken, MayRunCohortJobs, ReadsPatientData, visible_units
from patients.access import audit_list, audit_view, prediction_for_user, predictions_for_user
from patients.models import Prediction
from sightline.api_errors import ApiError, error_body
from sightline.parsers import StrictJSONParser

from . import selectors, services
from .models import CohortJob
from .parsers import NDJSONParser
from .payloads import PredictionIn, prediction_request_schema
from .serializers import (
    CohortQuerySerializer,
    OutcomeInSerializer,
    OutcomeOutSerializer,
)


class PredictionInSchema(OpenApiSerializerExtension):
    """The OpenAPI component of a posted prediction, generated from the types ingest checks it with."""

    target_class = PredictionIn

    def get_name(self, auto_schema, direction) -> str:
        return "PredictionIn"

    def map_serializer(self, auto_schema, direction) -> dict:
        return prediction_request_schema()


# The bulk body is a list of the component the single endpoint registers.
PREDICTION_IN_REF = {"$ref": "#/components/schemas/PredictionIn"}


class PredictionIngestApi(APIView):
    permission_classes = [IsServiceToken]

    @extend_schema(request=PredictionIn, responses={200: OpenApiTypes.OBJECT, 201: OpenApiTypes.OBJECT})
    def post(self, request: Request) -> Response:
        if not isinstance(request.data, dict):
            raise ApiError(code="invalid", detail="The body is one prediction as a JSON object.")
        result = services.prediction_ingest(payload=request.data, source=Prediction.Source.REST)
        return Response(
            selectors.prediction_body(result.prediction),
            status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK,
        )


class PredictionBulkIngestApi(APIView):
    """Up to BULK_MAX_ITEMS predictions as a JSON list or NDJSON; each item answered on its own."""

    permission_classes = [IsServiceToken]
    parser_classes = [StrictJSONParser, NDJSONParser]

    @extend_schema(
        request={
            "application/json": {"type": "array", "items": PREDICTION_IN_REF},
            "application/x-ndjson": {"type": "array", "items": PREDICTION_IN_REF},
        },
        responses={200: OpenApiTypes.OBJECT},
    )
    def post(self, request: Request) -> Response:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
        if length > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
            raise ApiError(
                code="payload_too_large",
                detail=f"The body is {length} bytes; split it into requests of at most "
                f"{settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes.",
                status_code=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            )
        payloads = request.data
        if not isinstance(payloads, list):
            raise ApiError(
                code="invalid",
                detail="The body is a JSON list of predictions, or NDJSON (application/x-ndjson).",
                fields={"body": ["Expected a list."]},
            )
        if len(payloads) > settings.BULK_MAX_ITEMS:
            raise ApiError(
                code="payload_too_large",
                detail=f"{len(payloads)} predictions in one request; the limit is {settings.BULK_MAX_ITEMS}.",
                status_code=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            )
        outcomes = services.prediction_ingest_many(payloads=payloads, source=Prediction.Source.BULK)
        results = []
        for index, outcome in enumerate(outcomes):
            if isinstance(outcome, ApiError):
                body = error_body(outcome.code, str(outcome.detail), outcome.fields)
                results.append({"index": index, "status": outcome.status_code, **body})
            else:
                code = status.HTTP_201_CREATED if outcome.created else status.HTTP_200_OK
                results.append(
                    {"index": index, "status": code, **selectors.prediction_body(outcome.prediction)}
                )
        return Response({"results": results}, status=status.HTTP_200_OK)


class PredictionExplanationApi(APIView):
    permission_classes = [ReadsPatientData]

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request, prediction_id: int) -> Response:
        prediction = prediction_for_user(request.user, prediction_id, request=request)
        audit_view(request, action="api_explanation", prediction=prediction)
        return Response(selectors.explanation_body(prediction))


class OutcomeApi(APIView):
    permission_classes = [IsServiceToken]

    @extend_schema(
        request=OutcomeInSerializer, responses={200: OutcomeOutSerializer, 201: OutcomeOutSerializer}
    )
    def post(self, request: Request) -> Response:
        serializer = OutcomeInSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        outcome, created = services.outcome_record(
            encounter_id=serializer.validated_data["encounter_id"],
            outcome=serializer.validated_data["outcome"],
            occurred_at=serializer.validated_data.get("occurred_at"),
        )
        return Response(
            OutcomeOutSerializer(outcome).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class PredictionWhatIfApi(APIView):
    """`POST {"changes": {"<feature>": value}}`: the risk and SHAP with mutable inputs changed.

    Answered synchronously; nothing is stored but the audit event."""

    permission_classes = [ReadsPatientData]

    @extend_schema(request=OpenApiTypes.OBJECT, responses={200: OpenApiTypes.OBJECT})
    def post(self, request: Request, prediction_id: int) -> Response:
        prediction = prediction_for_user(request.user, prediction_id, request=request)
        body = request.data if isinstance(request.data, dict) else {}
        result = services.prediction_what_if(prediction=prediction, changes=body.get("changes"))
        audit_view(request, action="api_what_if", prediction=prediction)
        return Response(result)


class CohortJobApi(APIView):
    """Progress of a cohort recompute job (no patient data). Admins only, as on the job page."""

    permission_classes = [IsPerson, MayRunCohortJobs]

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request, job_id: int) -> Response:
        job = CohortJob.objects.select_related("version__registered_model").filter(pk=job_id).first()
        if job is None:
            raise ApiError(code="not_found", detail="No such job.", status_code=status.HTTP_404_NOT_FOUND)
        return Response(services.cohort_job_progress(job))


class CohortApi(APIView):
    """`GET ?model=NAME[&version=V][&unit=MICU][&shift=day|night][&from=YYYY-MM-DD][&to=...]`:
    cohort SHAP importance and a bounded sample, over the units the user may see."""

    permission_classes = [ReadsPatientData]

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request) -> Response:
        serializer = CohortQuerySerializer(data=request.query_params)
        serializer.is_valid(raise_exception=True)
        query = serializer.validated_data
        version = selectors.version_for_cohort(name=query["model"], version=query.get("version"))
        allowed = visible_units(request.user)
        units = [query["unit"]] if query.get("unit") else allowed
        if allowed is not None and units is not None:
            units = [u for u in units if u in allowed]
        summary = selectors.cohort_summary(
            version=version,
            units=units,
            shift=query.get("shift"),
            day_from=query.get("from"),
            day_to=query.get("to"),
        )
        # Per-prediction values and SHAP: which patients, and the query over how many explanations.
        sampled = predictions_for_user(request.user).filter(pk__in=summary["sample"]["prediction_ids"])
        audit_list(
            request,
            action="api_cohort",
            patients=sampled.values_list("patient__external_id", flat=True),
            rows=summary["sample"]["n"],
            note=f"sample {summary['sample']['n']} of {summary['explanations']} explanations",
        )
        return Response(summary)
