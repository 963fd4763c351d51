"""The project's urls with the monitoring and FHIR includes the lead adds to sightline/urls.py."""

from django.urls import include, path

from sightline.urls import handler404, handler500  # noqa: F401
from sightline.urls import urlpatterns as project_urlpatterns

urlpatterns = [
    path("monitoring/", include("monitoring.urls")),
    path("fhir/", include("monitoring.fhir_urls")),
    *project_urlpatterns,
]
