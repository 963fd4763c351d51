"""Registry pages: the model list, each version's model card and its Model Facts label (no patient
data: any logged-in role)."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from accounts import permissions
from models_registry.facts import model_facts
from models_registry.facts_pdf import model_facts_pdf
from models_registry.selectors import model_card, model_card_charts_cached, model_list, model_version_get


@login_required
def registry_list(request: HttpRequest) -> HttpResponse:
    return render(request, "models_registry/model_list.html", {"models": model_list()})


@login_required
def card_page(request: HttpRequest, name: str, version: int) -> HttpResponse:
    found = model_version_get(name=name, version=version)
    # An admin reaches the registry's work from here: upload a new version, recompute the cohort
    # (both in Django's admin).
    in_admin = permissions.may_use_django_admin(request.user)
    context = {
        "card": model_card(found),
        "version_pk": found.pk,
        "may_upload": in_admin and permissions.may_manage_registry(request.user),
        "may_recompute": in_admin and permissions.may_run_cohort_jobs(request.user),
    }
    return render(request, "models_registry/model_card.html", context)


@login_required
def card_charts_json(request: HttpRequest, name: str, version: int) -> JsonResponse:
    return JsonResponse(model_card_charts_cached(model_version_get(name=name, version=version)))


@login_required
def facts_page(request: HttpRequest, name: str, version: int) -> HttpResponse:
    found = model_version_get(name=name, version=version)
    facts = model_facts(model_card(found), found.spec)
    return render(request, "models_registry/model_facts.html", {"facts": facts})


@login_required
def facts_pdf(request: HttpRequest, name: str, version: int) -> HttpResponse:
    found = model_version_get(name=name, version=version)
    response = HttpResponse(
        model_facts_pdf(model_facts(model_card(found), found.spec)), content_type="application/pdf"
    )
    response["Content-Disposition"] = f'inline; filename="model-facts-{name}-v{version}.pdf"'
    return response
