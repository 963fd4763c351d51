from datetime import datetime, time, timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from accounts.permissions import API_TOKEN_SCOPES
from accounts.tokens import ApiTokenRefused, api_token_create


def parse_expires(raw: str | None) -> datetime | None:
    """'30' or '30d' (days from now), or an ISO-8601 date or datetime with a zone."""
    if raw is None:
        return None
    text = raw.strip()
    days = text[:-1] if text.lower().endswith("d") else text
    if days.isdigit():
        return timezone.now() + timedelta(days=int(days))
    day = parse_date(text) if len(text) == 10 else None
    if day is not None:  # the end of that day
        moment = datetime.combine(day, time.max, tzinfo=timezone.get_current_timezone())
    else:
        moment = parse_datetime(text)
    if moment is None or timezone.is_naive(moment):
        raise CommandError(
            f"--expires {raw!r}: give a number of days (30 or 30d), a date (2027-01-31) or a datetime "
            "with its zone (2027-01-31T18:00:00Z)."
        )
    return moment


def parse_scopes(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [s.strip() for value in values for s in value.split(",") if s.strip()]


class Command(BaseCommand):
    help = (
        "Create an API token for an admin (e.g. for a training job that uploads bundles to "
        "POST /api/v1/models/). The token is printed once; only its sha256 is stored. It works within "
        "its scopes until it expires, is revoked, or the user's role changes."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("username", help="An existing user with the admin role.")
        parser.add_argument("--name", default="", help="What the token is for, e.g. 'nightly-training'.")
        parser.add_argument(
            "--scope",
            action="append",
            metavar="SCOPE",
            help=f"What the token may do, repeatable or comma-separated: {', '.join(API_TOKEN_SCOPES)} "
            "(registry: model upload, model cards and cohort jobs; patient-data: read scores and "
            "explanations). Default: both.",
        )
        parser.add_argument(
            "--expires",
            metavar="WHEN",
            help="Days from now (30 or 30d), or a date or datetime; default API_TOKEN_DEFAULT_DAYS (90), "
            "at most API_TOKEN_MAX_DAYS (365).",
        )

    def handle(self, *args, username: str, name: str, scope, expires, **options) -> None:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user named '{username}'.")
        try:
            token, key = api_token_create(
                user=user, name=name, scopes=parse_scopes(scope), expires_at=parse_expires(expires)
            )
        except ApiTokenRefused as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(key)
        self.stderr.write(
            f"API token {token.prefix}… for '{username}' created, scopes {', '.join(token.scopes)}, "
            f"expires {token.expires_at:%Y-%m-%d %H:%M} UTC. Store it now: it is not shown again. "
            "Send it as 'Authorization: Token <key>'."
        )
