"""Security settings read by sightline.settings: the Content-Security-Policy (django-csp), the
session limits (accounts.sessions), login throttling (clinician_ui.login_throttle) and the client's
address behind a proxy. Environment-driven like the rest (sightline.envvars)."""

import os
import secrets
import time
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from sightline.envvars import env, envint, envlist


def installation_key(path: Path, *, wait_seconds: float = 5.0) -> str:
    """This installation's own secret, made on its first start and kept in `path` (mode 0600).
    Processes that start together (web workers, a Celery worker) race to make it: one creates the
    file (O_EXCL), the others find it and read it once its writer has filled it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        deadline = time.monotonic() + wait_seconds
        while not (key := path.read_text().strip()):
            if time.monotonic() > deadline:
                raise ImproperlyConfigured(
                    f"{path} is empty: delete it to make a new key (exports made with the old one "
                    "get new pseudonyms), or set PSEUDONYM_KEY."
                ) from None
            time.sleep(0.05)
        return key
    key = secrets.token_urlsafe(32)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(key)
    return key


# Content-Security-Policy (django-csp): scripts, styles, images, fonts and fetches from this
# origin only; no inline script, no eval, no plugins, no <base>. Plotly (served from our static
# files) makes two <style> elements itself: an empty one it fills through the CSSOM, and the map
# library's stylesheet; the policy allows exactly those two contents by hash (the hash of the
# second changes with the plotly pin: tests/test_csp_browser.py fails until it is updated here).
# FRAME_ANCESTORS (env CSP_FRAME_ANCESTORS, comma-separated origins) may frame Sightline, e.g. an
# EHR that embeds the SMART app; by default none may, like X-Frame-Options: DENY (which browsers
# ignore once frame-ancestors names an origin).
FRAME_ANCESTORS = envlist("CSP_FRAME_ANCESTORS")
_PLOTLY_STYLE_HASHES = [
    "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='",  # an empty <style>
    "'sha256-ji27qzEtxXZW+7dun6UwjHXJ18e6WAin1VvNtkzIE/o='",  # plotly.js 4.1.1's maplibre-gl css
]
_CSP_DIRECTIVES = {
    "default-src": ["'none'"],
    "script-src": ["'self'"],
    "style-src": ["'self'", *_PLOTLY_STYLE_HASHES],
    "img-src": ["'self'", "data:"],
    "font-src": ["'self'"],
    "connect-src": ["'self'"],
    "form-action": ["'self'"],
    "base-uri": ["'none'"],
    "object-src": ["'none'"],
    "frame-ancestors": FRAME_ANCESTORS or ["'none'"],
}
if env("CSP_REPORT_URI"):
    _CSP_DIRECTIVES["report-uri"] = [env("CSP_REPORT_URI")]
CONTENT_SECURITY_POLICY = {"DIRECTIVES": _CSP_DIRECTIVES}

# Sessions (ASVS 3.3): a shared ward PC signs its user out after SESSION_IDLE_TIMEOUT_SECONDS
# without a request of theirs (background refreshes do not count), warning the page
# SESSION_IDLE_WARNING_SECONDS before; whatever the activity, a session ends
# SESSION_ABSOLUTE_SECONDS after its login; its cookie ends when the browser closes.
SESSION_IDLE_TIMEOUT_SECONDS = envint("SESSION_IDLE_TIMEOUT_SECONDS", 20 * 60)
SESSION_IDLE_WARNING_SECONDS = envint("SESSION_IDLE_WARNING_SECONDS", 2 * 60)
SESSION_ABSOLUTE_SECONDS = envint("SESSION_ABSOLUTE_SECONDS", 12 * 3600)
SESSION_COOKIE_AGE = SESSION_ABSOLUTE_SECONDS
SESSION_EXPIRE_AT_BROWSER_CLOSE = True

# The client's address (audit records, login throttling): REMOTE_ADDR, unless the request came
# from one of TRUSTED_PROXIES (addresses or networks, e.g. the compose file's nginx), in which case
# the right-most address in CLIENT_IP_HEADER that is not itself a trusted proxy. Unset: no proxy
# is trusted and forwarded headers are ignored (a client could write them).
TRUSTED_PROXIES = envlist("TRUSTED_PROXIES")
CLIENT_IP_HEADER = env("CLIENT_IP_HEADER", "X-Forwarded-For")

# Login throttling by backoff (clinician_ui.login_throttle): free failures and the longest wait for
# a username from one address, for a username from anywhere (at most ~100 failures an hour on one
# account, ASVS 2.2.1) and for an address; the first wait; how long a count is remembered.
LOGIN_FAILURE_LIMIT = envint("LOGIN_FAILURE_LIMIT", 5)
LOGIN_BACKOFF_MAX_SECONDS = envint("LOGIN_BACKOFF_MAX_SECONDS", 300)
LOGIN_FAILURE_USER_LIMIT = envint("LOGIN_FAILURE_USER_LIMIT", 20)
LOGIN_BACKOFF_USER_MAX_SECONDS = envint("LOGIN_BACKOFF_USER_MAX_SECONDS", 50)
LOGIN_FAILURE_IP_LIMIT = envint("LOGIN_FAILURE_IP_LIMIT", 20)
LOGIN_BACKOFF_IP_MAX_SECONDS = envint("LOGIN_BACKOFF_IP_MAX_SECONDS", 30)
LOGIN_BACKOFF_SECONDS = envint("LOGIN_BACKOFF_SECONDS", 1)
LOGIN_FAILURE_WINDOW_SECONDS = envint("LOGIN_FAILURE_WINDOW_SECONDS", 15 * 60)
