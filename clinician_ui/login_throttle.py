"""Login throttling by backoff, never a hard lock: after a few failures, each further attempt must
wait, twice as long after each failure, up to a cap. Three counts, in the Django cache (Redis in
production), so every web process shares them:

- a username from one address (LOGIN_FAILURE_LIMIT free failures, waits up to
  LOGIN_BACKOFF_MAX_SECONDS, 300): a guesser slows down their own address only, so the account's
  owner, at another workstation, is not kept out by a stranger's guesses;
- a username from anywhere (LOGIN_FAILURE_USER_LIMIT free, waits up to
  LOGIN_BACKOFF_USER_MAX_SECONDS, 50): against guesses spread over many addresses, at most about
  100 failures an hour on one account (ASVS 2.2.1); its cap is low, so it only ever slows the owner;
- an address (LOGIN_FAILURE_IP_LIMIT free, waits up to LOGIN_BACKOFF_IP_MAX_SECONDS, 30): a ward
  workstation (or a hospital's NAT) is shared, so a guesser there may slow a colleague's login by
  seconds, never stop it. The address is the client's (patients.access.client_ip: behind a trusted
  proxy, the forwarded one).

Each attempt is counted as a failure before its password is checked, atomically (cache.add and
cache.incr): of N attempts sent at once, each gets its own number, and those the backoff does not
allow yet are refused (429, Retry-After) unchecked and uncounted. A count is forgotten
LOGIN_FAILURE_WINDOW_SECONDS after its last counted attempt. A successful login un-counts itself
and clears its username's count from its address; not the address's count or the username's
count from anywhere (an attacker holding one account must not reset what they are guessing with).
"""

import contextlib
import hashlib
import math
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

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


@dataclass(frozen=True)
class _Count:
    key: str
    free: int
    longest: int

    def at(self, number: int) -> str:
        """The key holding when counted attempt `number` was made."""
        return f"{self.key}:at:{number}"


def _counts(*, username: str, ip: str | None) -> list[_Count]:
    name = username.strip().lower()
    counts = [
        _Count(
            _key("user-ip", f"{name}\0{ip or ''}"),
            settings.LOGIN_FAILURE_LIMIT,
            settings.LOGIN_BACKOFF_MAX_SECONDS,
        ),
        _Count(
            _key("user", name), settings.LOGIN_FAILURE_USER_LIMIT, settings.LOGIN_BACKOFF_USER_MAX_SECONDS
        ),
    ]
    if ip:
        counts.append(
            _Count(_key("ip", ip), settings.LOGIN_FAILURE_IP_LIMIT, settings.LOGIN_BACKOFF_IP_MAX_SECONDS)
        )
    return counts


def _delay(failures: int, free: int, longest: int) -> float:
    if failures < free:
        return 0.0
    return min(float(longest), settings.LOGIN_BACKOFF_SECONDS * 2.0 ** (failures - free))


def _increment(key: str) -> int:
    window = settings.LOGIN_FAILURE_WINDOW_SECONDS
    for _ in range(3):
        cache.add(key, 0, timeout=window)
        try:
            return cache.incr(key)
        except ValueError:  # expired between add and incr
            continue
    raise RuntimeError(f"The login throttle could not count on {key}.")


def _uncount(key: str) -> None:
    with contextlib.suppress(ValueError):  # already forgotten
        cache.decr(key)


def _reserve(count: _Count, now: float) -> float:
    """Count this attempt (atomically: its own number n) and return 0, or how long it must wait
    (then it is not counted). Attempt n waits for the backoff after attempt n-1; if n-1 is being
    counted at this very moment, it is taken as made now."""
    number = _increment(count.key)
    delay = _delay(number - 1, count.free, count.longest)
    if delay > 0:
        previous = cache.get(count.at(number - 1))
        wait = (now if previous is None else previous) + delay - now
        if wait > 0:
            _uncount(count.key)
            return wait
    window = settings.LOGIN_FAILURE_WINDOW_SECONDS
    cache.set(count.at(number), now, timeout=window)
    cache.touch(count.key, window)
    return 0.0


@dataclass
class LoginAttempt:
    """One attempt: counted in `held` up front, or refused for `wait` seconds."""

    username: str
    ip: str | None
    held: list[_Count] = field(default_factory=list)
    wait: int = 0


def login_attempt_begin(*, username: str, ip: str | None) -> LoginAttempt:
    """Count the attempt on every key before any password is checked; if one of them must still
    wait, un-count it on all and return the longest wait (`wait` > 0: refuse, check nothing)."""
    attempt = LoginAttempt(username=username, ip=ip)
    now = _now()
    waits = []
    for count in _counts(username=username, ip=ip):
        wait = _reserve(count, now)
        if wait > 0:
            waits.append(wait)
        else:
            attempt.held.append(count)
    if waits:
        for count in attempt.held:
            _uncount(count.key)
        attempt.held = []
        attempt.wait = max(1, math.ceil(max(waits)))
    return attempt


def login_attempt_succeeded(attempt: LoginAttempt) -> None:
    """The password was right: the username's count from this address starts again; the others
    forget this attempt only."""
    pair, *others = attempt.held or [None]
    if pair is not None:
        cache.delete(pair.key)
    for count in others:
        _uncount(count.key)


def _refused(request: HttpRequest, context: dict, seconds: int) -> HttpResponse:
    response = render(request, "registration/login.html", context, status=429)
    response["Retry-After"] = str(seconds)
    return response


class ThrottledLoginView(auth_views.LoginView):
    template_name = "registration/login.html"
    redirect_authenticated_user = True

    def post(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        self.attempt = login_attempt_begin(username=request.POST.get("username", ""), ip=client_ip(request))
        if self.attempt.wait:
            form = self.get_form_class()(request=request)  # unbound: the password is not checked
            context = self.get_context_data(form=form, locked=WAIT_MESSAGE.format(seconds=self.attempt.wait))
            return _refused(request, context, self.attempt.wait)
        return super().post(request, *args, **kwargs)

    def form_valid(self, form):
        login_attempt_succeeded(self.attempt)
        return super().form_valid(form)


def admin_login(request: HttpRequest) -> HttpResponse:
    """The Django admin's own login page, behind the same counts (sightline/urls.py puts it in
    front of the admin's): one throttle, whichever door is tried."""
    from django.contrib import admin
    from django.contrib.auth.forms import AuthenticationForm

    if request.method != "POST":
        return admin.site.login(request)
    attempt = login_attempt_begin(username=request.POST.get("username", ""), ip=client_ip(request))
    if attempt.wait:
        context = {"form": AuthenticationForm(request), "locked": WAIT_MESSAGE.format(seconds=attempt.wait)}
        return _refused(request, context, attempt.wait)
    response = admin.site.login(request)
    if response.status_code == 302 and request.user.is_authenticated:
        login_attempt_succeeded(attempt)
    return response
