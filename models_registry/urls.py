"""Registry API, included under /api/v1/ by sightline/urls.py."""

from django.urls import path

from models_registry import api

urlpatterns = [
    path("models/", api.ModelUploadApi.as_view(), name="api-model-upload"),
    path(
        "models/<slug:name>/versions/<int:version>/card/", api.ModelCardApi.as_view(), name="api-model-card"
    ),
    path(
        "models/<slug:name>/versions/<int:version>/source-attributes/",
        api.SourceAttributesApi.as_view(),
        name="api-source-attributes",
    ),
]
