from django.urls import path

from . import fhir_views

urlpatterns = [
    path("", fhir_views.TransactionView.as_view(), name="fhir-transaction"),
    path("RiskAssessment/<int:pk>", fhir_views.RiskAssessmentView.as_view(), name="fhir-risk-assessment"),
]
