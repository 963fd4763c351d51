"""Every role decision in Sightline. Views, API views, admins and templates ask here; nothing else
reads a user's role.

Roles: a clinician works in the units on their profile; an admin (or a Django superuser) manages the
registry, monitoring and cohort jobs and sees every unit; an auditor reads every unit and the audit
log but acts on nothing. A scoring service (ServicePrincipal) is authenticated but is no person: it
may post predictions and outcomes and read nothing.

Which patient rows a user sees is patients.access's job; it asks visible_units() here.

A person may also call the API with a personal API token (accounts.tokens). The token carries
scopes and is worth no more than they say: `registry` (model upload, model cards, cohort jobs) and
`patient-data` (reading patients' scores and explanations). A request made with a token lacking
`patient-data` sees no unit at all, whatever its user's role. A token is worth something only
while its user still holds the role it was issued under (may_use_api_token).
"""

from rest_framework import permissions

from .models import Profile
from .principals import ServicePrincipal

Role = Profile.Role

SCOPE_REGISTRY = "registry"
SCOPE_PATIENT_DATA = "patient-data"
API_TOKEN_SCOPES = (SCOPE_REGISTRY, SCOPE_PATIENT_DATA)
# Set on request.user by token authentication (accounts.auth): the scopes of the token used.
TOKEN_SCOPES_ATTR = "api_token_scopes"  # noqa: S105 (an attribute name, not a secret)


def token_scopes(user) -> tuple[str, ...] | None:
    """The scopes of the API token this request came with, or None for a session (no token)."""
    scopes = getattr(user, TOKEN_SCOPES_ATTR, None)
    return None if scopes is None else tuple(scopes)


def _scope_allows(user, scope: str) -> bool:
    scopes = token_scopes(user)
    return scopes is None or scope in scopes


def user_role(user) -> str | None:
    """The user's role, or None for an anonymous user, a service, or a user with no profile."""
    if not is_person(user):
        return None
    if user.is_superuser:
        return Role.ADMIN
    profile = getattr(user, "profile", None)
    return profile.role if profile else None


def is_person(user) -> bool:
    """A signed-in person (a user account), as opposed to a scoring service or nobody."""
    return bool(getattr(user, "is_authenticated", False)) and hasattr(user, "_meta")


def is_service(user) -> bool:
    return isinstance(user, ServicePrincipal)


def is_admin(user) -> bool:
    return user_role(user) == Role.ADMIN


def visible_units(user) -> list[str] | None:
    """The unit codes the user may see; None means every unit, [] means none."""
    if not _scope_allows(user, SCOPE_PATIENT_DATA):
        return []
    role = user_role(user)
    if role in (Role.ADMIN, Role.AUDITOR):
        return None
    if role == Role.CLINICIAN:
        return list(user.profile.units)
    return []


def may_act_on_alerts(user) -> bool:
    """Clinicians and admins acknowledge, accept, dismiss and escalate alerts; auditors only read."""
    return user_role(user) in (Role.CLINICIAN, Role.ADMIN)


def may_read_audit(user) -> bool:
    """Auditors and admins read the audit log and export clinicians' actions for outcome studies."""
    return user_role(user) in (Role.ADMIN, Role.AUDITOR)


def may_manage_registry(user) -> bool:
    """Register, promote (and override the gate), and retire model versions."""
    return is_admin(user) and _scope_allows(user, SCOPE_REGISTRY)


def may_view_monitoring(user) -> bool:
    """The drift, performance and alert-burden dashboards and their JSON."""
    return is_admin(user) and _scope_allows(user, SCOPE_REGISTRY)


def may_run_cohort_jobs(user) -> bool:
    """Start a cohort recompute and read its progress, on the page and over the API alike."""
    return is_admin(user) and _scope_allows(user, SCOPE_REGISTRY)


def may_use_django_admin(user) -> bool:
    """Django's admin (the registry's upload form, read-only clinical records): Django's own rule,
    an active staff account, and only an admin's."""
    return bool(getattr(user, "is_active", False)) and getattr(user, "is_staff", False) and is_admin(user)


def may_act_through_ehr(user) -> bool:
    """Whether an EHR user mapped to this account (interop.models.PractitionerMapping) may be it: a
    CDS card read as them, an EHR launch signed in as them. Never an account with admin rights (an
    admin, a superuser or Django staff), so that nothing coming from an EHR ever acts as an admin."""
    if not (is_person(user) and user.is_active) or user.is_staff or user.is_superuser:
        return False
    return user_role(user) in (Role.CLINICIAN, Role.AUDITOR)


def may_hold_api_token(user) -> bool:
    """Personal API tokens (for a training job's model upload) are issued to active admins only."""
    return bool(getattr(user, "is_active", False)) and is_admin(user)


def may_use_api_token(user, *, issued_role: str) -> bool:
    """A token is honoured only while its user may hold one and still has the role it was issued
    under: a demoted or promoted user's tokens stop working (and are revoked)."""
    return may_hold_api_token(user) and user_role(user) == issued_role


def may_read_patient_data(user) -> bool:
    """A person, by session or with a token that has the patient-data scope."""
    return is_person(user) and _scope_allows(user, SCOPE_PATIENT_DATA)


def may_read_registry(user) -> bool:
    """Model cards: any signed-in person; with a token, one that has the registry scope."""
    return is_person(user) and _scope_allows(user, SCOPE_REGISTRY)


class IsPerson(permissions.BasePermission):
    """DRF: a signed-in person; a scoring-service token sees no patient data."""

    message = "Patient data needs a signed-in user; a scoring-service token may only post."

    def has_permission(self, request, view) -> bool:
        return is_person(request.user)


class ReadsPatientData(permissions.BasePermission):
    """DRF: patients' scores and explanations; a token needs the patient-data scope."""

    message = "Patient data needs a signed-in user; a scoring-service token may only post."

    def has_permission(self, request, view) -> bool:
        if is_person(request.user) and not may_read_patient_data(request.user):
            self.message = (
                f"This API token lacks the '{SCOPE_PATIENT_DATA}' scope (create_api_token --scope)."
            )
        return may_read_patient_data(request.user)


class ReadsRegistry(permissions.BasePermission):
    """DRF: model cards; a token needs the registry scope."""

    message = "Model cards are for signed-in users."

    def has_permission(self, request, view) -> bool:
        if is_person(request.user) and not may_read_registry(request.user):
            self.message = f"This API token lacks the '{SCOPE_REGISTRY}' scope (create_api_token --scope)."
        return may_read_registry(request.user)


class IsServiceToken(permissions.BasePermission):
    message = "This endpoint takes a scoring-service token (Authorization: Token ...)."

    def has_permission(self, request, view) -> bool:
        return is_service(request.user)


class IsRegistryAdmin(permissions.BasePermission):
    message = "Only an admin may register models."

    def has_permission(self, request, view) -> bool:
        if is_admin(request.user) and not may_manage_registry(request.user):
            self.message = f"This API token lacks the '{SCOPE_REGISTRY}' scope (create_api_token --scope)."
        return may_manage_registry(request.user)


class MayRunCohortJobs(permissions.BasePermission):
    message = "Cohort recompute jobs are for admins."

    def has_permission(self, request, view) -> bool:
        if is_admin(request.user) and not may_run_cohort_jobs(request.user):
            self.message = f"This API token lacks the '{SCOPE_REGISTRY}' scope (create_api_token --scope)."
        return may_run_cohort_jobs(request.user)
