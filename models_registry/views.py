"""Registry pages: the model list and each version's model card (no patient data: any logged-in role)."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from models_registry.selectors import model_card, model_card_charts_cached, model_list, model_version_get


@login_required
def registry_list(request: HttpRequest) -> HttpResponse:
    return render(request, "models_registry/model_list.html", {"models": model_list()})


@login_required
def card_page(request: HttpRequest, name: str, version: int) -> HttpResponse:
    card = model_card(model_version_get(name=name, version=version))
    return render(request, "models_registry/model_card.html", {"card": card})


@login_required
def card_charts_json(request: HttpRequest, name: str, version: int) -> JsonResponse:
    return JsonResponse(model_card_charts_cached(model_version_get(name=name, version=version)))
