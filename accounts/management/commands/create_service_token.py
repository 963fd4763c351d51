from django.core.management.base import BaseCommand, CommandError

from accounts.auth import service_token_create
from accounts.models import ServiceToken


class Command(BaseCommand):
    help = (
        "Create a token for a scoring service (it may post predictions and outcomes, and see no "
        "patient). The token is printed once; only its sha256 is stored."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("name", help="A name for the service, e.g. 'epic-scoring'. Must be unique.")

    def handle(self, *args, name: str, **options) -> None:
        name = name.strip()
        if not name:
            raise CommandError("The token needs a name.")
        if ServiceToken.objects.filter(name=name).exists():
            raise CommandError(f"A service token named '{name}' already exists; choose another name.")
        _, key = service_token_create(name=name)
        self.stdout.write(key)
        self.stderr.write(
            f"Token for '{name}' created. Store it now: it is not shown again. "
            "Send it as 'Authorization: Token <key>'."
        )
