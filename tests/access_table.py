"""The access walk's table (tests/test_access_walk.py, tests/test_access_table.py): every URL in the
URLconf, and the answer each role must get from it.

Roles: anonymous, alice (clinician, MICU), bob (clinician, CCU), charlie (admin), auditor, and the
scoring-service token. A URL pattern without an entry here fails `test_every_url_has_an_expectation`:
a new endpoint is walked only once someone has written down who may reach it.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib import admin
from django.urls import URLPattern, URLResolver, get_resolver

ROLES = ("anonymous", "alice", "bob", "charlie", "auditor", "service")
PEOPLE = ("alice", "bob", "charlie", "auditor")
# Units each role may see (patients.access.visible_units).
SEES = {"alice": {"MICU"}, "bob": {"CCU"}, "charlie": {"MICU", "CCU"}, "auditor": {"MICU", "CCU"}}

PATIENTS = {
    "MICU": {"id": "P-MICU-7F3A", "display_name": "Marlowe, Micaela", "unit": "MICU", "bed": "4"},
    "CCU": {"id": "P-CCU-91C2", "display_name": "Calloway, Cedric", "unit": "CCU", "bed": "9"},
}

# Markers for answers that are redirects to a login page.
LOGIN = "login"  # 302 to /login/?next=...
ADMIN_LOGIN = "admin-login"  # 302 to /admin/login/?next=...


# --- collecting the URLconf -----------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    route: str  # the pattern as written, e.g. "api/v1/predictions/<int:prediction_id>/explanation/"
    name: str  # "namespace:name", or "" for an unnamed pattern

    @property
    def is_admin(self) -> bool:
        return self.route.startswith("admin/")


def url_routes() -> list[Route]:
    def walk(resolver: URLResolver, prefix: str, namespace: str | None):
        for pattern in resolver.url_patterns:
            if isinstance(pattern, URLResolver):
                ns = namespace
                if pattern.namespace:
                    ns = f"{namespace}:{pattern.namespace}" if namespace else pattern.namespace
                yield from walk(pattern, prefix + str(pattern.pattern), ns)
            else:
                assert isinstance(pattern, URLPattern)
                name = pattern.name or ""
                if name and namespace:
                    name = f"{namespace}:{name}"
                yield Route(prefix + str(pattern.pattern), name)

    return list(walk(get_resolver(), "", None))


# --- the expectation table -------------------------------------------------------------------
#
# Per URL name: role -> expected GET answer. A status, a set of acceptable statuses, LOGIN or
# ADMIN_LOGIN; for a URL about one patient (`per_patient`) the people's entries are "own" (the
# role sees the patient's unit) and "other" (it does not).


@dataclass(frozen=True)
class Expect:
    get: dict
    per_patient: bool = False
    # role -> statuses for a POST with `post_body`, for the roles that must be refused (and
    # some that must succeed, to show the refusal is about the role).
    post: dict | None = None
    post_body: dict | None = None
    query: str = ""


def person(status, **overrides) -> dict:
    """The same answer for every signed-in person, with per-role overrides."""
    return {p: overrides.get(p, status) for p in PEOPLE}


HTML_PAGE = {"anonymous": LOGIN, "service": LOGIN}
# DRF endpoints open to signed-in people only (IsPerson): the token is refused, not ignored.
PERSON_API = {"anonymous": 401, "service": 403}
# DRF endpoints with session authentication only: a token is not a login, so both are 401.
SESSION_API = {"anonymous": 401, "service": 401}
# The service's own endpoints (IsServiceToken).
SERVICE_ONLY = {"anonymous": 401, **person(403)}
REFUSE_POST_TO_PEOPLE = {"anonymous": 401, **person(403)}
# Monitoring JSON: session only, 401 JSON without a login, 403 JSON for anyone but an admin.
MONITORING_JSON = {"anonymous": 401, "service": 401, **person(403, charlie={200, 202, 400, 404})}

PATIENT_PAGE = {"own": 200, "other": 404}

EXPECTATIONS: dict[str, Expect] = {
    # clinician_ui pages
    # Asking for another unit by its filter shows nothing of it (the walk's body check).
    "worklist": Expect({**HTML_PAGE, **person(200)}, query="unit=MICU"),
    "worklist-json": Expect({**HTML_PAGE, **person(200)}, query="unit=MICU"),
    "login": Expect({"anonymous": 200, "service": 200, **person(302)}),
    # How long the session has left (the idle warning): signed-in people only, no patient data.
    "session-status": Expect({"anonymous": 401, "service": 401, **person(200)}),
    # Django's LogoutView takes POST only.
    "logout": Expect({role: 405 for role in ROLES}),
    "prediction-detail": Expect({**HTML_PAGE, "own": 200, "other": 404}, per_patient=True),
    "explanation-json": Expect({**HTML_PAGE, "own": 200, "other": 404}, per_patient=True),
    "alert-detail": Expect({**HTML_PAGE, "own": 200, "other": 404}, per_patient=True),
    "audit-log": Expect({**HTML_PAGE, **person(403, charlie=200, auditor=200)}),
    # clinician_ui API
    "alert-actions": Expect(
        {**SESSION_API, **person(405)},
        per_patient=True,
        post={
            "anonymous": {401, 403},
            "service": {401, 403},
            "auditor": 403,  # reads, never acts
            "other": 404,  # another unit's alert does not exist for them
            "own-clinician": 201,
            "charlie": 201,
        },
        post_body={"action": "acknowledge", "reason": "reviewing", "comment": "walk"},
    ),
    "export-overrides": Expect(
        {**SESSION_API, **person(403, charlie=200, auditor=200)},
        query="from=2000-01-01&to=2100-01-01&format=csv",
    ),
    # The schema documents the API; it holds no data, and tools fetch it before they log in.
    "api-schema": Expect({role: 200 for role in ROLES}),
    # Its browsable page is a page like the others: signed-in people only.
    "api-docs": Expect({**HTML_PAGE, **person(200)}),
    # explanations API
    "prediction-ingest": Expect(
        {**SERVICE_ONLY, "service": 405}, post=REFUSE_POST_TO_PEOPLE, post_body={"external_id": "x"}
    ),
    "prediction-bulk-ingest": Expect(
        {**SERVICE_ONLY, "service": 405}, post=REFUSE_POST_TO_PEOPLE, post_body={"external_id": "x"}
    ),
    "outcome-record": Expect(
        {**SERVICE_ONLY, "service": 405}, post=REFUSE_POST_TO_PEOPLE, post_body={"encounter_id": "x"}
    ),
    "prediction-explanation": Expect({**PERSON_API, "own": 200, "other": 404}, per_patient=True),
    "prediction-what-if": Expect(
        {**PERSON_API, **person(405)},
        per_patient=True,
        post={"anonymous": 401, "service": 403, "other": 404, "own": {200, 400, 422}},
        post_body={"changes": {}},
    ),
    # The job API answers as the job page does (accounts.permissions.may_run_cohort_jobs): admins only.
    "job-detail": Expect({**PERSON_API, **person(403, charlie=200)}),
    "cohort-summary": Expect({**PERSON_API, **person({200, 404})}, query="model={model}&unit=MICU"),
    # registry API and pages (model cards hold no patient data: any signed-in person)
    # An admin's session or admin API token; a scoring-service token is refused.
    "api-model-upload": Expect(
        {**PERSON_API, **person(403, charlie=405)},
        # charlie passes the role check and reaches the parser: the upload is multipart only.
        post={**PERSON_API, **person(403, charlie=415)},
        post_body={"promote": "false"},
    ),
    # An admin API token with the registry scope reads cards too: a service token is a token, refused.
    "api-model-card": Expect({**PERSON_API, **person(200)}),
    "model-list": Expect({**HTML_PAGE, **person(200)}),
    "model-card": Expect({**HTML_PAGE, **person(200)}),
    "model-card-charts": Expect({**HTML_PAGE, **person(200)}),
    # The Model Facts label (HTML and PDF) and the HTI-1 source attributes: any signed-in person.
    "model-facts": Expect({**HTML_PAGE, **person(200)}),
    "model-facts-pdf": Expect({**HTML_PAGE, **person(200)}),
    "api-source-attributes": Expect({**PERSON_API, **person(200)}),
    # A cohort recompute job's progress page (admins only, like monitoring).
    "job-progress": Expect({**HTML_PAGE, **person(403, charlie=200)}),
    "job-resume": Expect(
        {**HTML_PAGE, **person(405)},
        post={**HTML_PAGE, **person(403, charlie=302)},
        post_body={},
    ),
    # monitoring (admins only)
    "monitoring": Expect({**HTML_PAGE, **person(403, charlie=200)}),
    "monitoring-summary": Expect(MONITORING_JSON),
    "monitoring-feature": Expect(MONITORING_JSON),
    "monitoring-prediction": Expect(MONITORING_JSON),
    "monitoring-performance": Expect(MONITORING_JSON),
    "monitoring-burden": Expect(MONITORING_JSON),
    "monitoring-subgroups": Expect(MONITORING_JSON),
    "monitoring-refresh": Expect(
        {role: 405 for role in ROLES},
        post={"anonymous": 401, "service": 401, **person(403, charlie={200, 202, 400})},
        post_body={},
    ),
    # FHIR
    "fhir-transaction": Expect(
        {**SERVICE_ONLY, "service": 405},
        post=REFUSE_POST_TO_PEOPLE,
        post_body={"resourceType": "Bundle", "type": "transaction", "entry": []},
    ),
    "fhir-risk-assessment": Expect(
        {"anonymous": 401, "service": 403, "own": 200, "other": 404}, per_patient=True
    ),
    # CDS Hooks (CONTRACT.md section 8): discovery is public metadata; a call needs the EHR's JWT,
    # and a session or API token is not one (401 for everyone).
    "cds-discovery": Expect({role: 200 for role in ROLES}),
    "cds-service": Expect(
        {role: 405 for role in ROLES}, post={role: 401 for role in ROLES}, post_body={"hook": "patient-view"}
    ),
    "cds-feedback": Expect({role: 405 for role in ROLES}, post={role: 401 for role in ROLES}, post_body={}),
    # SMART: without iss and launch (or a launch in progress) nothing is fetched and nothing opens.
    "smart-launch": Expect({role: 400 for role in ROLES}),
    "smart-callback": Expect({role: 400 for role in ROLES}),
}

# The Django admin is for staff (charlie): everyone else is sent to the admin login. charlie is an
# admin by role but holds no model permissions, so model pages answer 403 except the read-only
# audit records, which admins read.
ADMIN_SITE = {
    "admin:index": {"charlie": 200},
    "admin:login": {**{role: 200 for role in ROLES}, "charlie": 302},
    # The same page behind the login throttle (clinician_ui.login_throttle.admin_login).
    "admin-login": {**{role: 200 for role in ROLES}, "charlie": 302},
    "admin:password_change": {"charlie": 200},
    "admin:password_change_done": {"charlie": 200},
    "admin:autocomplete": {"charlie": 403},
    "admin:jsi18n": {"charlie": 200},
    "admin:view_on_site": {"charlie": 404},
    "admin:app_list": {"charlie": {200, 404}},
    "admin:models_registry_upload": {"charlie": 200},
    "admin:auth_user_password_change": {"charlie": 403},
}
# The final catch-all (unnamed): a staff member gets 404, anyone else the login.
ADMIN_CATCH_ALL = "admin/(?P<url>.*)$"
ADMIN_MODEL_VIEWS = ("changelist", "add", "history", "delete", "change", "object")
# Models whose rows admins read in the admin (the append-only records, and API tokens, revoked by
# an admin action): view, never change.
ADMIN_READABLE = {"patients.alertaction", "patients.auditevent", "accounts.apitoken"}
# Models Sightline admins manage in the admin whatever their Django permissions (interop.admin):
# practitioner mappings and the per-model CDS setting.
ADMIN_MANAGED = {"interop.practitionermapping", "interop.cdsservicesetting"}


def admin_model_views() -> dict[str, tuple[str, str]]:
    """URL name (or route for the unnamed object redirect) -> (model label, view)."""
    out = {}
    for model in admin.site._registry:
        app, name = model._meta.app_label, model._meta.model_name
        for view in ADMIN_MODEL_VIEWS[:-1]:
            out[f"admin:{app}_{name}_{view}"] = (f"{app}.{name}", view)
        out[f"admin/{app}/{name}/<path:object_id>/"] = (f"{app}.{name}", "object")
    return out


def admin_expectation(route: Route) -> dict | None:
    """role -> expected GET answer for an admin URL, or None when the table has no entry."""
    non_staff = {role: ADMIN_LOGIN for role in ROLES if role != "charlie"}
    if route.name == "admin:logout":
        # Logging out when not logged in to the admin goes back to its index (then its login).
        return {**{role: 302 for role in non_staff}, "charlie": 405}
    if route.route == ADMIN_CATCH_ALL:
        return {**non_staff, "charlie": 404}
    if route.name in ADMIN_SITE:
        return {**non_staff, **ADMIN_SITE[route.name]}
    model_views = admin_model_views()
    key = route.name or route.route
    if key not in model_views:
        return None
    label, view = model_views[key]
    if view == "object":
        charlie = 302  # redirects to the change view
    elif label in ADMIN_MANAGED:
        charlie = 200
    elif label in ADMIN_READABLE:
        charlie = {"changelist": 200, "change": 200, "history": 200, "add": 403, "delete": 403}[view]
    else:
        charlie = 403
    return {**non_staff, "charlie": charlie}


def expectation_for(route: Route) -> Expect | None:
    if route.is_admin:
        table = admin_expectation(route)
        return Expect(table) if table is not None else None
    return EXPECTATIONS.get(route.name)
