"""Give failed explanations another go once their cause is fixed (a bug, a model artifact restored)."""

from datetime import UTC, datetime

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from explanations.models import Explanation
from explanations.services import explanations_enqueue, explanations_failed_retry
from models_registry.selectors import version_lookup


class Command(BaseCommand):
    help = (
        "Put failed explanations back to pending and queue them: those whose error contains "
        "--error-contains, of predictions scored since --since, of one --model (and --version). "
        "--dry-run only counts them."
    )

    suppressed_base_arguments = {"--version"}  # --version names the model version here

    def create_parser(self, prog_name, subcommand, **kwargs):
        return super().create_parser(prog_name, subcommand, conflict_handler="resolve", **kwargs)

    def add_arguments(self, parser):
        parser.add_argument("--error-contains", default="", help="only errors containing this text")
        parser.add_argument("--since", help="only predictions scored from this day on (YYYY-MM-DD, UTC)")
        parser.add_argument("--model", help="registered model name")
        parser.add_argument("--version", type=int, help="version number (default: the production one)")
        parser.add_argument("--dry-run", action="store_true", help="count them, change nothing")

    def handle(self, *args, **options):
        since = None
        if options["since"]:
            try:
                since = datetime.strptime(options["since"], "%Y-%m-%d").replace(tzinfo=UTC)
            except ValueError:
                raise CommandError(f"--since {options['since']!r} is not a day (YYYY-MM-DD).") from None
        version_id = None
        if options["model"]:
            version = version_lookup(name=options["model"], version=options["version"])
            if version is None:
                raise CommandError(
                    f"No such model version: {options['model']} {options['version'] or '(production)'}."
                )
            version_id = version.pk
        filters = {"error_contains": options["error_contains"], "since": since, "version_id": version_id}
        if options["dry_run"]:
            with transaction.atomic():
                ids = explanations_failed_retry(**filters)
                transaction.set_rollback(True)
            self.stdout.write(f"{len(ids)} failed explanation(s) would be retried (dry run: nothing changed)")
            return
        ids = explanations_failed_retry(**filters)
        queued = explanations_enqueue(ids) if ids else 0
        self.stdout.write(
            f"{len(ids)} failed explanation(s) back to pending, {queued} queued"
            + (" (the rest: the periodic sweep queues them)" if queued < len(ids) else "")
        )
        left = Explanation.objects.filter(status=Explanation.Status.FAILED).count()
        self.stdout.write(f"{left} failed explanation(s) left")
