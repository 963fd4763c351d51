from django.urls import path

from . import api

urlpatterns = [
    path("predictions/", api.PredictionIngestApi.as_view(), name="prediction-ingest"),
    path("predictions/bulk/", api.PredictionBulkIngestApi.as_view(), name="prediction-bulk-ingest"),
    path(
        "predictions/<int:prediction_id>/explanation/",
        api.PredictionExplanationApi.as_view(),
        name="prediction-explanation",
    ),
    path("outcomes/", api.OutcomeApi.as_view(), name="outcome-record"),
]
