from django.urls import path

from . import views

urlpatterns = [
    path("", views.dashboard, name="monitoring"),
    path("data/summary/", views.summary_data, name="monitoring-summary"),
    path("data/feature/", views.feature_data, name="monitoring-feature"),
    path("data/prediction/", views.prediction_data, name="monitoring-prediction"),
    path("data/performance/", views.performance_data, name="monitoring-performance"),
    path("data/burden/", views.burden_data, name="monitoring-burden"),
    path("data/subgroups/", views.subgroups_data, name="monitoring-subgroups"),
    path("refresh/", views.refresh, name="monitoring-refresh"),
]
