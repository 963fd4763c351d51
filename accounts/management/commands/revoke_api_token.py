"""python manage.py revoke_api_token TOKEN [TOKEN ...] | --user USERNAME --all | --list [--user USERNAME]

TOKEN is a token's id or the first characters of its key (its prefix, as create_api_token and the
list print it). A revoked token stops working at once; the row stays, with when and why it was
revoked (--reason), as its creation is recorded."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q, QuerySet

from accounts.models import ApiToken
from accounts.tokens import api_token_revoke, api_token_state

DEFAULT_REASON = "revoked with manage.py revoke_api_token"


def _when(moment) -> str:
    return f"{moment:%Y-%m-%d %H:%M}" if moment else "never"


class Command(BaseCommand):
    help = (
        "Revoke personal API tokens (create_api_token) by id or key prefix, or every token of a user "
        "(--user USERNAME --all); or list them (--list). Revoked tokens stop working at once and are "
        "kept, with when and why they were revoked."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "tokens", nargs="*", metavar="TOKEN", help="A token's id, or its key prefix (8 characters)."
        )
        parser.add_argument("--user", metavar="USERNAME", help="With --all or --list: this user's tokens.")
        parser.add_argument(
            "--all", dest="revoke_all", action="store_true", help="Revoke every active token of --user."
        )
        parser.add_argument(
            "--list", dest="list_only", action="store_true", help="List tokens (of --user) and revoke none."
        )
        parser.add_argument(
            "--reason", default="", help="Why, kept with the token (e.g. 'laptop lost'); who revoked it, too."
        )

    def handle(
        self, *args, tokens: list[str], user, revoke_all: bool, list_only: bool, reason: str, **options
    ):
        owner = self._user(user) if user else None
        if list_only:
            if tokens or revoke_all:
                raise CommandError("--list revokes nothing: give no TOKEN and no --all.")
            return self._list(ApiToken.objects.filter(user=owner) if owner else ApiToken.objects.all())
        if revoke_all == bool(tokens) or (revoke_all and owner is None):
            raise CommandError("Give TOKEN ids or prefixes, or --user USERNAME --all.")
        if revoke_all:
            chosen = list(ApiToken.objects.filter(user=owner, is_active=True).select_related("user"))
            if not chosen:
                self.stdout.write(f"'{owner.get_username()}' has no active API token; nothing revoked.")
        else:
            chosen = [self._token(ident, owner) for ident in tokens]
        why = f"{DEFAULT_REASON}: {reason.strip()}" if reason.strip() else DEFAULT_REASON
        for token in chosen:
            label = f"API token {token.pk} ({token.prefix}…) of '{token.user.get_username()}'"
            if api_token_revoke(token=token, reason=why):
                self.stdout.write(f"Revoked {label}.")
            else:
                self.stdout.write(f"{label} was already {api_token_state(token)}.")

    def _user(self, username: str):
        found = get_user_model().objects.filter(username=username).first()
        if found is None:
            raise CommandError(f"No user named '{username}'.")
        return found

    def _token(self, ident: str, owner) -> ApiToken:
        ident = ident.strip().rstrip("…")
        match = Q(prefix=ident) | (Q(pk=int(ident)) if ident.isdigit() else Q(pk__in=[]))
        found = ApiToken.objects.filter(match).select_related("user")
        if owner is not None:
            found = found.filter(user=owner)
        tokens = list(found[:5])
        if not tokens:
            raise CommandError(f"No API token with id or prefix '{ident}'; see --list. Nothing was revoked.")
        if len(tokens) > 1:
            ids = ", ".join(str(t.pk) for t in tokens)
            raise CommandError(
                f"'{ident}' names several tokens (ids {ids}); give the id. Nothing was revoked."
            )
        return tokens[0]

    def _list(self, tokens: QuerySet[ApiToken]) -> None:
        rows = tokens.select_related("user").order_by("user__username", "-created_at", "id")
        if not rows:
            self.stdout.write("No API tokens.")
        for token in rows:
            self.stdout.write(
                f"{token.pk}\t{token.prefix}…\t{token.user.get_username()}\t{token.name or '-'}\t"
                f"scopes {','.join(token.scopes) or '-'}\tcreated {_when(token.created_at)}\t"
                f"expires {_when(token.expires_at)}\tlast used {_when(token.last_used_at)}\t"
                f"{api_token_state(token)}"
            )
