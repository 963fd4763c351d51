"""Who is calling when it is not a person: a scoring service authenticated by its token."""

from dataclasses import dataclass

from .models import ServiceToken


@dataclass
class ServicePrincipal:
    """request.user for a scoring service: authenticated, but no person and no patient access."""

    token: ServiceToken
    is_authenticated: bool = True
    is_active: bool = True
    is_staff: bool = False
    is_superuser: bool = False

    @property
    def username(self) -> str:
        return f"service:{self.token.name}"

    def __str__(self) -> str:
        return self.username
