from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from accounts.tokens import ApiTokenRefused, api_token_create


class Command(BaseCommand):
    help = (
        "Create an API token for an admin (e.g. for a training job that uploads bundles to "
        "POST /api/v1/models/). The token is printed once; only its sha256 is stored."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("username", help="An existing user with the admin role.")
        parser.add_argument("--name", default="", help="What the token is for, e.g. 'nightly-training'.")

    def handle(self, *args, username: str, name: str, **options) -> None:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user named '{username}'.")
        try:
            token, key = api_token_create(user=user, name=name)
        except ApiTokenRefused as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(key)
        self.stderr.write(
            f"API token {token.prefix}… for '{username}' created. Store it now: it is not shown again. "
            "Send it as 'Authorization: Token <key>'."
        )
