"""Registry API: bundle upload (admins) and the model card as JSON (any logged-in user)."""

from __future__ import annotations

from django.conf import settings
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import permissions, serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.auth import ServiceTokenAuthentication, SessionLoginAuthentication
from accounts.permissions import IsPerson, IsRegistryAdmin, ReadsRegistry
from models_registry.bundle import BundleError, BundleTooLarge
from models_registry.facts import source_attributes
from models_registry.selectors import model_card, model_version_get
from models_registry.services import PromotionRefused, model_register_upload
from sightline.api_errors import ApiError

# Largest bundle zip accepted over the API (what it may unpack to: MODEL_BUNDLE_MAX_UNPACKED_BYTES).
DEFAULT_UPLOAD_MAX_BYTES = 512 * 1024 * 1024


def upload_max_bytes() -> int:
    return int(getattr(settings, "MODEL_UPLOAD_MAX_BYTES", DEFAULT_UPLOAD_MAX_BYTES))


def _truthy(value) -> bool:
    return str(value or "").strip().lower() in {"1", "true", "yes", "on"}


_REGISTERED = inline_serializer(
    "ModelRegistered",
    {
        "name": serializers.CharField(),
        "version": serializers.IntegerField(),
        "status": serializers.CharField(),
        "created": serializers.BooleanField(),
        "gate": serializers.JSONField(),
        "card_url": serializers.CharField(),
    },
)


class ModelUploadApi(APIView):
    """POST /api/v1/models/ — multipart: `bundle` (a .zip of a bundle), optional `promote` and
    `override_reason`. An admin's session or API token (`Authorization: Token <key>`, from
    `manage.py create_api_token`); a scoring-service token is refused (403)."""

    authentication_classes = [ServiceTokenAuthentication, SessionLoginAuthentication]
    permission_classes = [permissions.IsAuthenticated, IsRegistryAdmin]
    parser_classes = [MultiPartParser]

    @extend_schema(
        request={
            "multipart/form-data": inline_serializer(
                "ModelUpload",
                {
                    "bundle": serializers.FileField(help_text="A .zip of a bundle (CONTRACT.md section 1)."),
                    "promote": serializers.BooleanField(required=False),
                    "override_reason": serializers.CharField(required=False),
                },
            )
        },
        responses={201: _REGISTERED, 200: _REGISTERED},
    )
    def post(self, request):
        limit = upload_max_bytes()
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
        if declared > limit:
            # Refused before the body is read.
            raise _too_large(declared, limit)
        upload = request.FILES.get("bundle")
        if upload is None:
            raise ApiError(
                code="invalid",
                detail="Send the bundle as a .zip in the multipart field 'bundle'.",
                fields={"bundle": ["This field is required."]},
            )
        if upload.size > limit:
            raise _too_large(upload.size, limit)
        promote = _truthy(request.data.get("promote"))
        override_reason = str(request.data.get("override_reason") or "") or None
        try:
            version, created = model_register_upload(
                upload=upload, promote=promote, user=request.user, override_reason=override_reason
            )
        except BundleTooLarge as exc:
            raise ApiError(
                code="payload_too_large",
                detail=f"{exc} Nothing was registered.",
                status_code=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
                fields={"bundle": [str(exc)]},
            ) from exc
        except BundleError as exc:
            raise ApiError(code="invalid_bundle", detail=str(exc), fields={"bundle": [str(exc)]}) from exc
        except PromotionRefused as exc:
            raise ApiError(
                code="promotion_refused",
                detail=f"{exc} Nothing was registered.",
                status_code=status.HTTP_422_UNPROCESSABLE_ENTITY,
                fields={"promote": [str(exc)]},
            ) from exc
        return Response(
            {
                "name": version.registered_model.name,
                "version": version.version,
                "status": version.status,
                "created": created,
                "gate": version.gate,
                "card_url": reverse(
                    "api-model-card",
                    kwargs={"name": version.registered_model.name, "version": version.version},
                ),
            },
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


def _too_large(size: int, limit: int) -> ApiError:
    return ApiError(
        code="payload_too_large",
        detail=f"The upload is {size:,} bytes; bundles of at most {limit:,} bytes are accepted.",
        status_code=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        fields={"bundle": [f"At most {limit:,} bytes."]},
    )


class ModelCardApi(APIView):
    """GET /api/v1/models/{name}/versions/{v}/card/ — the model card (no patient data): a signed-in
    person, or an admin's API token with the registry scope."""

    authentication_classes = [ServiceTokenAuthentication, SessionLoginAuthentication]
    permission_classes = [permissions.IsAuthenticated, ReadsRegistry]

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request, name: str, version: int):
        return Response(model_card(model_version_get(name=name, version=version)))


class SourceAttributesApi(APIView):
    """GET /api/v1/models/{name}/versions/{v}/source-attributes/ — the ONC HTI-1 source attributes
    the bundle and the registry supply, "not provided" where the bundle is silent (no patient data)."""

    # A person: a session, or an admin's API token (a scoring-service token reads nothing).
    authentication_classes = [ServiceTokenAuthentication, SessionLoginAuthentication]
    permission_classes = [permissions.IsAuthenticated, IsPerson]

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request, name: str, version: int):
        found = model_version_get(name=name, version=version)
        return Response(source_attributes(model_card(found), found.spec))
