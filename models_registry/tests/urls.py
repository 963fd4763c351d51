"""The project's URLs plus the registry pages (until sightline/urls.py includes page_urls)."""

from django.urls import include, path

from sightline.urls import handler404, handler500  # noqa: F401
from sightline.urls import urlpatterns as project_urlpatterns

urlpatterns = [
    *[
        p
        for p in project_urlpatterns
        if "models_registry.page_urls" not in str(getattr(p, "urlconf_name", ""))
    ],
    path("", include("models_registry.page_urls")),
]
