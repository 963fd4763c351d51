"""Session limits (issue 15, finding 6; ASVS 3.3.2): an idle timeout and an absolute lifetime.

The session records when its user signed in and when they last did something. A request of a
signed-in user past SESSION_IDLE_TIMEOUT_SECONDS since the last activity, or past
SESSION_ABSOLUTE_SECONDS since the login, signs them out before the view runs: a page asked for
with GET is sent to the login page, anything else goes on as anonymous (the API answers 401, a
page's JSON poll meets the login redirect); the login page then says why. Background requests (the worklist's
refresh, a job's progress; header `X-Sightline-Background: 1`) never count as activity, so a
screen left open still times out. GET /session/ tells the page's timer how long is left.

A session signed in from an EHR (SMART App Launch, interop.smart_views) also ends when the EHR's
access token does (session_expire_at): an absolute moment that no activity moves, counted as the
absolute limit.
"""

import time
from datetime import UTC, datetime

from django.conf import settings
from django.contrib.auth import SESSION_KEY, logout
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponseRedirect, JsonResponse
from django.urls import reverse
from django.utils.http import urlencode

from sightline.api_errors import error_body

LOGIN_AT = "_sightline_login_at"
ACTIVE_AT = "_sightline_active_at"
# When the session must end whatever the activity (epoch seconds): the EHR token's expiry.
EXPIRES_AT = "_sightline_expires_at"
# Why the last session ended ("idle" or "absolute"), kept in the anonymous session that follows,
# for the login page (templates/registration/login.html), whichever request noticed it.
ENDED = "sightline_ended"
BACKGROUND_HEADER = "HTTP_X_SIGHTLINE_BACKGROUND"
# The last-activity stamp is rewritten at most this often (one session write per request is
# waste), and at most a twentieth of the idle limit late.
TOUCH_EVERY_SECONDS = 10
_NOT_PAGES = ("/api/", "/fhir/", "/cds-services", "/smart/", "/session/")


def is_background(request: HttpRequest) -> bool:
    return request.META.get(BACKGROUND_HEADER) == "1"


def seconds_left(session, now: float) -> dict[str, int]:
    """How long this session has before its idle and its absolute limit."""
    idle = settings.SESSION_IDLE_TIMEOUT_SECONDS - (now - session.get(ACTIVE_AT, now))
    absolute = settings.SESSION_ABSOLUTE_SECONDS - (now - session.get(LOGIN_AT, now))
    if session.get(EXPIRES_AT) is not None:
        absolute = min(absolute, session[EXPIRES_AT] - now)
    return {"idle": int(idle), "absolute": int(absolute)}


def _ended(session, now: float) -> str | None:
    left = seconds_left(session, now)
    if left["absolute"] <= 0:
        return "absolute"
    if left["idle"] <= 0:
        return "idle"
    return None


def _is_page(request: HttpRequest) -> bool:
    return (
        request.method == "GET"
        and not request.path.startswith(_NOT_PAGES)
        and not request.path.endswith(".json")
        and not is_background(request)
    )


def session_clocks_start(sender, request, user, **kwargs) -> None:
    """user_logged_in receiver (accounts.apps): the login starts both clocks (and drops the end of
    an earlier EHR session: a SMART launch sets its own after signing in)."""
    session = getattr(request, "session", None)
    if session is not None:
        now = time.time()
        session[LOGIN_AT] = now
        session[ACTIVE_AT] = now
        session.pop(ENDED, None)
        if session.pop(EXPIRES_AT, None) is not None:
            session.set_expiry(None)


def session_expire_at(session, moment: float) -> None:
    """End this signed-in session at `moment` (epoch seconds) however active its user is: the
    middleware signs them out then, and the session row and cookie expire at that absolute time
    (a datetime expiry, which a save does not push back, unlike seconds of inactivity)."""
    session[EXPIRES_AT] = moment
    session.set_expiry(datetime.fromtimestamp(moment, tz=UTC))


def _counts_as_activity(request: HttpRequest, now: float) -> bool:
    every = min(TOUCH_EVERY_SECONDS, settings.SESSION_IDLE_TIMEOUT_SECONDS / 20)
    stale = now - request.session.get(ACTIVE_AT, 0) >= every
    return stale and not is_background(request)


def _signed_in(request: HttpRequest) -> bool:
    """A session user, without touching the database for a request with no session cookie (a
    token's API call); with the database down, the view answers (503 JSON on the API), not this."""
    if settings.SESSION_COOKIE_NAME not in request.COOKIES:
        return False
    try:
        return SESSION_KEY in request.session
    except (OperationalError, InterfaceError):
        return False


class SessionTimeoutMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest):
        now = time.time()
        if _signed_in(request) and LOGIN_AT in request.session:
            ended = _ended(request.session, now)
            if ended is not None:
                logout(request)
                request.session[ENDED] = ended
                if _is_page(request):
                    query = urlencode({"next": request.get_full_path()})
                    return HttpResponseRedirect(f"{reverse('login')}?{query}")
            elif _counts_as_activity(request, now):
                request.session[ACTIVE_AT] = now
        response = self.get_response(request)
        # A session signed in before these limits existed: its clocks start now. (A token's call
        # has no session to time.)
        if _signed_in(request) and LOGIN_AT not in request.session:
            request.session[LOGIN_AT] = now
            request.session[ACTIVE_AT] = now
        return response


def session_status(request: HttpRequest) -> JsonResponse:
    """GET /session/: seconds left before the idle and the absolute limit, and the warning lead.
    Without the background header it counts as activity (the page's "Stay signed in")."""
    if not request.user.is_authenticated or LOGIN_AT not in request.session:
        return JsonResponse(error_body("not_authenticated", "Not signed in."), status=401)
    return JsonResponse(
        {**seconds_left(request.session, time.time()), "warning": settings.SESSION_IDLE_WARNING_SECONDS}
    )
