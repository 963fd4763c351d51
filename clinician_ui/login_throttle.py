"""Login throttling: repeated failed logins lock the username (and, at a higher count, the address)
for a window. Counts live in the Django cache (Redis in production), so every web process shares them.

- LOGIN_FAILURE_LIMIT failures for one username within LOGIN_FAILURE_WINDOW_SECONDS lock that
  username; LOGIN_FAILURE_IP_LIMIT failures from one address lock the address. The address limit is
  higher because a ward workstation (or a hospital's NAT) is shared by many staff.
- While locked, a login attempt is refused before any password is checked, and does not extend
  the lock: the window runs from the first failure counted.
- A successful login clears its username's count. Not its address's: an attacker holding one
  account must not be able to reset the count of an address they are guessing passwords from.
"""

import hashlib

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse

from patients.access import client_ip

LOCKED_MESSAGE = (
    "Too many failed login attempts. Logging in is paused for {minutes} minutes; "
    "ask your unit's Sightline administrator if you cannot wait."
)


def _key(kind: str, value: str) -> str:
    digest = hashlib.sha256(value.encode()).hexdigest()[:32]
    return f"login-failures:{kind}:{digest}"


def _keys(*, username: str, ip: str | None) -> list[tuple[str, int]]:
    keys = [(_key("user", username.strip().lower()), settings.LOGIN_FAILURE_LIMIT)]
    if ip:
        keys.append((_key("ip", ip), settings.LOGIN_FAILURE_IP_LIMIT))
    return keys


def login_locked(*, username: str, ip: str | None) -> bool:
    counts = cache.get_many([key for key, _ in _keys(username=username, ip=ip)])
    return any(counts.get(key, 0) >= limit for key, limit in _keys(username=username, ip=ip))


def login_failure_record(*, username: str, ip: str | None) -> None:
    window = settings.LOGIN_FAILURE_WINDOW_SECONDS
    for key, _ in _keys(username=username, ip=ip):
        # add() starts the window on the first failure; incr() never moves it.
        cache.add(key, 0, timeout=window)
        try:
            cache.incr(key)
        except ValueError:  # expired between add and incr: this failure starts a new window
            cache.set(key, 1, timeout=window)


def login_success_record(*, username: str) -> None:
    cache.delete(_key("user", username.strip().lower()))


class ThrottledLoginView(auth_views.LoginView):
    template_name = "registration/login.html"
    redirect_authenticated_user = True

    def post(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        username = request.POST.get("username", "")
        if login_locked(username=username, ip=client_ip(request)):
            form = self.get_form_class()(request=request)  # unbound: the password is not checked
            minutes = max(1, settings.LOGIN_FAILURE_WINDOW_SECONDS // 60)
            context = self.get_context_data(form=form, locked=LOCKED_MESSAGE.format(minutes=minutes))
            return self.render_to_response(context, status=429)
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
    from django.shortcuts import render

    if request.method != "POST":
        return admin.site.login(request)
    username, ip = request.POST.get("username", ""), client_ip(request)
    if login_locked(username=username, ip=ip):
        minutes = max(1, settings.LOGIN_FAILURE_WINDOW_SECONDS // 60)
        context = {"form": AuthenticationForm(request), "locked": LOCKED_MESSAGE.format(minutes=minutes)}
        return render(request, "registration/login.html", context, status=429)
    response = admin.site.login(request)
    if response.status_code == 302 and request.user.is_authenticated:
        login_success_record(username=request.user.get_username())
    else:
        login_failure_record(username=username, ip=ip)
    return response
