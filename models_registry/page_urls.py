"""HTML pages of the registry; included at the site root by sightline/urls.py."""

from django.urls import path

from models_registry import views

urlpatterns = [
    path("models/", views.registry_list, name="model-list"),
    path("models/<slug:name>/versions/<int:version>/", views.card_page, name="model-card"),
    path(
        "models/<slug:name>/versions/<int:version>/charts.json",
        views.card_charts_json,
        name="model-card-charts",
    ),
    path("models/<slug:name>/versions/<int:version>/facts/", views.facts_page, name="model-facts"),
    path("models/<slug:name>/versions/<int:version>/facts.pdf", views.facts_pdf, name="model-facts-pdf"),
]
