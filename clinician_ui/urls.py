from django.contrib.auth import views as auth_views
from django.urls import path

from . import api, views
from .login_throttle import ThrottledLoginView

urlpatterns = [
    path("", views.worklist, name="worklist"),
    path("worklist.json", views.worklist_json, name="worklist-json"),
    path("login/", ThrottledLoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("predictions/<int:prediction_id>/", views.prediction_detail, name="prediction-detail"),
    path("predictions/<int:prediction_id>/explanation.json", views.explanation_json, name="explanation-json"),
    path("alerts/<int:alert_id>/", views.alert_detail, name="alert-detail"),
    path("audit/", views.audit_log, name="audit-log"),
    path("api/v1/alerts/<int:alert_id>/actions/", api.AlertActionCreateApi.as_view(), name="alert-actions"),
    path("api/v1/exports/overrides/", api.OverridesExportApi.as_view(), name="export-overrides"),
]
