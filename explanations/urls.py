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
    path(
        "predictions/<int:prediction_id>/what-if/",
        api.PredictionWhatIfApi.as_view(),
        name="prediction-what-if",
    ),
    path("outcomes/", api.OutcomeApi.as_view(), name="outcome-record"),
    path("jobs/<int:job_id>/", api.CohortJobApi.as_view(), name="job-detail"),
    path("cohort/", api.CohortApi.as_view(), name="cohort-summary"),
]
