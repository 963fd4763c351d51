"""HTML pages of cohort recompute jobs; included at the site root by sightline/urls.py."""

from django.urls import path

from explanations import views

urlpatterns = [
    path("jobs/<int:job_id>/", views.job_page, name="job-progress"),
    path("jobs/<int:job_id>/resume/", views.job_resume, name="job-resume"),
]
