from django.urls import path

from . import smart_views

urlpatterns = [
    path("launch", smart_views.launch, name="smart-launch"),
    path("callback", smart_views.callback, name="smart-callback"),
]
