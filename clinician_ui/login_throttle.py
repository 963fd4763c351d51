"""Login throttling by backoff, never a hard lock: after a few failures, each further attempt for
that username (or from that address) must wait, twice as long after each failure, up to a cap.
Counts live in the Django cache (Redis in production), so every web process shares them.

- LOGIN_FAILURE_LIMIT failures for one username are free; the next attempt waits
  LOGIN_BACKOFF_SECONDS, then twice that after each further failure, at most
  LOGIN_BACKOFF_MAX_SECONDS (300). An address gets LOGIN_FAILURE_IP_LIMIT free failures and waits
  at most LOGIN_BACKOFF_IP_MAX_SECONDS (30): a ward workstation (or a hospital's NAT) is shared,
  so a guesser there may slow a colleague's login by seconds, never stop it. The address is the
  client's (patients.access.client_ip: behind a trusted proxy, the forwarded one).
- An attempt made before its wait is over is refused (429, Retry-After) before any password is
  checked, and is not counted. The count of a key is forgotten LOGIN_FAILURE_WINDOW_SECONDS after
  its last failure.
- A successful login clears its username's count. Not its address's: an attacker holding one
  account must not be able to reset the count of an address they are guessing passwords from.
"""

import hashlib
import math
import time

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse

from patients.access import client_ip

WAIT_MESSAGE = (
    "Too many failed login attempts. Wait {seconds} seconds before trying again; ask your unit's "
    "Sightline administrator if you cannot log in."
)


def _now() -> float:
    return time.time()


def _key(kind: str, value: str) -> str:
    digest = hashlib.sha256(value.encode()).hexdigest()[:32]
    return f"login-failures:{kind}:{digest}"


def _keys(*, username: str, ip: str | None) -> list[tuple[str, int, int]]:
    """(cache key, free failures, longest wait) for the username and the address."""
    keys = [
        (
            _key("user", username.strip().lower()),
            settings.LOGIN_FAILURE_LIMIT,
            settings.LOGIN_BACKOFF_MAX_SECONDS,
        )
    ]
    if ip:
        keys.append((_key("ip", ip), settings.LOGIN_FAILURE_IP_LIMIT, settings.LOGIN_BACKOFF_IP_MAX_SECONDS))
    return keys


def _delay(failures: int, free: int, longest: int) -> float:
    if failures < free:
        return 0.0
    return min(float(longest), settings.LOGIN_BACKOFF_SECONDS * 2.0 ** (failures - free))


def login_wait(*, username: str, ip: str | None) -> int:
    """Whole seconds before this username, from this address, may try again (0: now)."""
    keys = _keys(username=username, ip=ip)
    states = cache.get_many([key for key, _, _ in keys])
    now = _now()
    waits = [
        states[key]["last"] + _delay(states[key]["n"], free, longest) - now
        for key, free, longest in keys
        if key in states
    ]
    longest_wait = max(waits, default=0.0)
    return math.ceil(longest_wait) if longest_wait > 0 else 0


def login_failure_record(*, username: str, ip: str | None) -> None:
    now = _now()
    for key, _, _ in _keys(username=username, ip=ip):
        state = cache.get(key) or {"n": 0}
        cache.set(key, {"n": state["n"] + 1, "last": now}, timeout=settings.LOGIN_FAILURE_WINDOW_SECONDS)


def login_success_record(*, username: str) -> None:
    cache.delete(_key("user", username.strip().lower()))


def _refused(request: HttpRequest, context: dict, seconds: int) -> HttpResponse:
    from django.shortcuts import render

    response = render(request, "registration/login.html", context, status=429)
    response["Retry-After"] = str(seconds)
    return response


class ThrottledLoginView(auth_views.LoginView):
    template_name = "registration/login.html"
    redirect_authenticated_user = True

    def post(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        seconds = login_wait(username=request.POST.get("username", ""), ip=client_ip(request))
        if seconds:
            form = self.get_form_class()(request=request)  # unbound: the password is not checked
            context = self.get_context_data(form=form, locked=WAIT_MESSAGE.format(seconds=seconds))
            return _refused(request, context, seconds)
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form):
        login_failure_record(username=self.request.POST.get("username", ""), ip=client_ip(self.request))
        return super().form_invalid(form)

    def form_valid(self, form):
        login_success_record(username=form.get_user().get_username())
        return super().form_valid(form)


def admin_login(request: HttpRequest) -> HttpResponse:
    """The Django admin's own login page, behind the same counts (sightline/urls.py puts it in
    front of the admin's): one throttle, whichever door is tried."""
    from django.contrib import admin
    from django.contrib.auth.forms import AuthenticationForm

    if request.method != "POST":
        return admin.site.login(request)
    username, ip = request.POST.get("username", ""), client_ip(request)
    seconds = login_wait(username=username, ip=ip)
    if seconds:
        context = {"form": AuthenticationForm(request), "locked": WAIT_MESSAGE.format(seconds=seconds)}
        return _refused(request, context, seconds)
    response = admin.site.login(request)
    if response.status_code == 302 and request.user.is_authenticated:
        login_success_record(username=request.user.get_username())
    else:
        login_failure_record(username=username, ip=ip)
    return response
