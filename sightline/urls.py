from django.contrib import admin
from django.contrib.auth.decorators import login_required
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from accounts.sessions import session_status
from clinician_ui.login_throttle import admin_login

urlpatterns = [
    # Before the admin's own login/, so that it is throttled like the app's.
    path("admin/login/", admin_login, name="admin-login"),
    path("admin/", admin.site.urls),
    path("session/", session_status, name="session-status"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The browsable API documentation (Swagger UI; its script is a file, not inline), for people
    # signed in; the schema itself stays public, as the contract it documents is.
    path(
        "api/docs/",
        login_required(SpectacularSwaggerSplitView.as_view(url_name="api-schema")),
        name="api-docs",
    ),
    path("api/v1/", include("explanations.urls")),
    path("api/v1/", include("models_registry.urls")),
    path("monitoring/", include("monitoring.urls")),
    path("fhir/", include("interop.fhir_urls")),
    # CDS Hooks 2.0 and SMART App Launch (CONTRACT.md section 8). CDS Hooks paths have no trailing slash.
    path("", include("interop.cds_urls")),
    path("smart/", include("interop.smart_urls")),
    path("", include("models_registry.page_urls")),
    path("", include("explanations.page_urls")),
    path("", include("clinician_ui.urls")),
]

# API clients get JSON, never an HTML error page (CONTRACT.md section 7).
handler404 = "sightline.views.not_found"
handler500 = "sightline.views.server_error"
