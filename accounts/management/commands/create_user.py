"""python manage.py create_user USERNAME --role clinician|admin|auditor [--units MICU,CCU]
[--password-from-env VAR] (CONTRACT.md section 6)."""

import getpass
import os
import sys

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts.models import Profile
from accounts.permissions import user_role
from accounts.tokens import api_tokens_revoke


def parse_units(raw: str) -> list[str]:
    units: list[str] = []
    for unit in raw.split(","):
        unit = unit.strip()
        if unit and unit not in units:
            units.append(unit)
    return units


class Command(BaseCommand):
    help = (
        "Create a Sightline user, or update an existing one, with a role and units. "
        "A clinician sees the patients of their units; an admin (also given Django admin access) and an "
        "auditor see every unit, and an auditor never acts on alerts. The password is read from the "
        "environment variable named by --password-from-env, or asked for when run at a terminal."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("username", help="Login name; an existing user of that name is updated.")
        parser.add_argument(
            "--role",
            required=True,
            choices=Profile.Role.values,
            help="clinician: sees their units and acts on alerts; admin: every unit, acts, Django admin; "
            "auditor: every unit, read only.",
        )
        parser.add_argument(
            "--units",
            help="Comma-separated unit codes, e.g. MICU,CCU (what a clinician sees). "
            "When updating, leaving it out keeps the user's units.",
        )
        parser.add_argument(
            "--password-from-env",
            metavar="VAR",
            help="Name of an environment variable holding the password (for scripts and containers).",
        )

    def handle(
        self, *args, username: str, role: str, units: str | None, password_from_env: str | None, **options
    ):
        User = get_user_model()
        user = User.objects.filter(username=username).first()
        password = self._password(password_from_env, user or User(username=username))

        with transaction.atomic():
            created = user is None
            if created:
                user = User(username=username)
            previous_role = None if created else user_role(user)
            user.is_staff = role == Profile.Role.ADMIN
            user.is_active = True
            user.set_password(password)
            user.save()
            profile, _ = Profile.objects.get_or_create(user=user)
            profile.role = role
            if units is not None:
                profile.units = parse_units(units)
            profile.save()
            user.profile = profile  # the role just saved, not one read before
            revoked = 0
            if previous_role is not None and previous_role != user_role(user):
                revoked = api_tokens_revoke(user=user, reason=f"role changed from {previous_role} to {role}")

        if role == Profile.Role.CLINICIAN and not profile.units:
            self.stderr.write(
                self.style.WARNING(
                    f"{username} is a clinician with no unit and will see no patient; add --units."
                )
            )
        shown_units = ", ".join(profile.units) if role == Profile.Role.CLINICIAN else "all units"
        verb = "Created" if created else "Updated"
        self.stdout.write(self.style.SUCCESS(f"{verb} {username}: role {role}, {shown_units}."))
        if revoked:
            self.stdout.write(f"Revoked {revoked} API token(s) of {username}: the role changed.")

    def _password(self, env_var: str | None, user) -> str:
        if env_var:
            password = os.environ.get(env_var)
            if not password:
                raise CommandError(
                    f"Environment variable {env_var} is not set or empty; it must hold the password."
                )
        elif sys.stdin.isatty():
            password = getpass.getpass("Password: ")
            if password != getpass.getpass("Password (again): "):
                raise CommandError("The two passwords differ; nothing was changed.")
        else:
            raise CommandError(
                "No password given: pass --password-from-env VAR naming an environment variable that holds "
                "it, or run the command at a terminal to be asked for it. Nothing was changed."
            )
        try:
            validate_password(password, user)
        except ValidationError as exc:
            raise CommandError(
                "Password rejected: " + " ".join(exc.messages) + " Nothing was changed."
            ) from exc
        return password
