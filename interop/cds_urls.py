"""CDS Hooks 2.0 paths, as the spec spells them (no trailing slash); included at the site root."""

from django.urls import path

from . import cds_views

urlpatterns = [
    path("cds-services", cds_views.discovery, name="cds-discovery"),
    path("cds-services/<slug:service_id>", cds_views.service_call, name="cds-service"),
    path("cds-services/<slug:service_id>/feedback", cds_views.feedback, name="cds-feedback"),
]
