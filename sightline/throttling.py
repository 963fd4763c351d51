"""Rate limits per API caller: per scoring-service token, per signed-in user, per anonymous address.

Over the limit the API answers 429 JSON with Retry-After. Rates are in REST_FRAMEWORK
DEFAULT_THROTTLE_RATES (scopes "service", "user", "anon"), counted in the shared cache (Redis).
An anonymous caller's address is patients.access.client_ip's (X-Forwarded-For only from one of
TRUSTED_PROXIES), never DRF's get_ident, which believes any X-Forwarded-For a client writes.
"""

from rest_framework.throttling import SimpleRateThrottle

from accounts.permissions import is_service
from patients.access import client_ip


class CallerRateThrottle(SimpleRateThrottle):
    def __init__(self) -> None:
        # The scope, and so the rate, is known only once the caller is: see allow_request.
        self.scope = None
        self.ident = None

    def allow_request(self, request, view) -> bool:
        user = request.user
        if is_service(user):
            self.scope, self.ident = "service", f"token-{user.token.pk}"
        elif getattr(user, "is_authenticated", False):
            self.scope, self.ident = "user", f"user-{user.pk}"
        else:
            self.scope, self.ident = "anon", self.get_ident(request)
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)

    def get_ident(self, request) -> str:
        return client_ip(request) or ""

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.ident}
