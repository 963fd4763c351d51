"""python manage.py export_overrides: the outcome-study export to a file (CONTRACT.md section 4)."""

import shlex
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from clinician_ui.exports import (
    ExportParamError,
    csv_stream,
    export_chunks,
    export_snapshot,
    export_window_parse,
    overrides_queryset,
    parquet_write,
)
from patients.models import AlertAction, AuditEvent


class Command(BaseCommand):
    help = (
        "Export every clinician action on an alert with acted_at in [--from, --to) as CSV or Parquet: "
        "pseudonymised patient ids (HMAC with PSEUDONYM_KEY), the top features shown, the outcome when "
        "known. A date-only --to means the end of that day. The export is recorded in the audit log."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--from", dest="start", required=True, help="ISO-8601 date or datetime, e.g. 2026-11-01"
        )
        parser.add_argument(
            "--to", dest="end", required=True, help="ISO-8601 date or datetime, e.g. 2026-11-30"
        )
        parser.add_argument("--format", dest="fmt", default="csv", choices=["csv", "parquet"])
        parser.add_argument("--output", required=True, type=Path, help="File to write")

    def handle(self, *args, start: str, end: str, fmt: str, output: Path, **options) -> None:
        try:
            window = export_window_parse({"from": start, "to": end, "format": fmt})
        except ExportParamError as exc:
            raise CommandError(f"--{exc.field}: {exc.message}") from None
        if not output.parent.is_dir():
            raise CommandError(f"--output: directory {output.parent} does not exist.")
        # Whoever runs manage.py has the database itself: every unit is exported. The rows are fixed
        # at the newest action now, so the audit record names exactly the patients written.
        snapshot = export_snapshot(overrides_queryset(AlertAction.objects.all(), window))
        chunks = export_chunks(snapshot.queryset)
        if window.format == "csv":
            with output.open("w", encoding="utf-8", newline="") as handle:
                handle.writelines(csv_stream(chunks))
        else:
            parquet_write(chunks, str(output))
        command = ["manage.py", "export_overrides", "--from", start, "--to", end, "--format", fmt]
        AuditEvent.objects.create(
            user=None,
            action="export",
            path=shlex.join([*command, "--output", str(output)])[:500],
            patients=snapshot.patients,
            rows=snapshot.rows,
        )
        self.stdout.write(f"Wrote {snapshot.rows} actions to {output} ({window.format}).")
