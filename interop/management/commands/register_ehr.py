"""python manage.py register_ehr ISS (--jwks-file PATH | --jwks-url URL) [--name NAME] [--client-id ID]
    [--smart-origin ORIGIN ...] [--algorithms ES384,RS384 [--allow-other-asymmetric]]
python manage.py register_ehr --list | register_ehr ISS --revoke | register_ehr ISS --refresh

CONTRACT.md sections 6 and 8: an EHR that may call the CDS Hooks service and launch the SMART app.
Every registration, refresh and revocation is audited with its command line.
"""

import json
import shlex
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from interop.ehr_jwt import DEFAULT_ALGORITHMS
from interop.ehr_registry import EhrRegistrationError, ehr_refresh, ehr_register, ehr_revoke
from interop.models import RegisteredEhr
from patients.models import AuditEvent


class Command(BaseCommand):
    help = (
        "Register an EHR (its FHIR base URL is ISS, the 'iss' of its CDS Hooks tokens and SMART launches) "
        "with the public keys it signs with: a JWKS file, or a JWKS URL fetched now (and again only with "
        "--refresh; never at request time). Registering a known ISS again replaces its keys and lifts a "
        "revocation. --list shows the registered EHRs; --revoke stops one calling and launching."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "iss", nargs="?", help="The EHR's FHIR base URL, e.g. https://ehr.example.org/fhir."
        )
        keys = parser.add_mutually_exclusive_group()
        keys.add_argument("--jwks-file", type=Path, help="A file holding the EHR's public JWKS.")
        keys.add_argument("--jwks-url", help="The URL of the EHR's JWKS, fetched at registration.")
        parser.add_argument("--name", default="", help="A name for people, e.g. 'Epic production'.")
        parser.add_argument(
            "--client-id", default="", help="The client id the EHR gave Sightline as a SMART app."
        )
        parser.add_argument(
            "--algorithms",
            default=",".join(DEFAULT_ALGORITHMS),
            help="Signature algorithms accepted from this EHR's CDS Hooks tokens (default and only "
            "ES384,RS384, the ones CDS Hooks 2.0 names; never none or HS*).",
        )
        parser.add_argument(
            "--allow-other-asymmetric",
            action="store_true",
            help="Opt in to an asymmetric algorithm besides ES384/RS384 in --algorithms (e.g. RS256 for "
            "an EHR that cannot sign with SHA-384).",
        )
        parser.add_argument(
            "--smart-origin",
            action="append",
            default=[],
            help="An origin (https://host[:port]) besides the ISS's own where the EHR's SMART token "
            "endpoint and JWKS live; repeat for several. Endpoints elsewhere are refused.",
        )
        actions = parser.add_mutually_exclusive_group()
        actions.add_argument("--list", action="store_true", help="List the registered EHRs.")
        actions.add_argument("--revoke", action="store_true", help="Revoke ISS.")
        actions.add_argument("--refresh", action="store_true", help="Fetch ISS's registered JWKS URL again.")

    def handle(self, *args, **options) -> None:
        command = _command_line(options)
        if options["list"]:
            return self._list(command)
        iss = (options["iss"] or "").strip()
        if not iss:
            raise CommandError("ISS is required (the EHR's FHIR base URL), or use --list.")
        try:
            if options["revoke"]:
                ehr = ehr_revoke(iss=iss, command=command)
                self.stdout.write(f"Revoked {ehr.iss} at {ehr.revoked_at:%Y-%m-%dT%H:%M:%SZ}.")
                return None
            if options["refresh"]:
                ehr = ehr_refresh(iss=iss, command=command)
                self.stdout.write(f"Fetched {len(ehr.jwks['keys'])} keys for {ehr.iss} from {ehr.jwks_url}.")
                return None
            jwks = self._read_file(options["jwks_file"]) if options["jwks_file"] else None
            if jwks is None and not options["jwks_url"]:
                raise CommandError("Give the EHR's keys: --jwks-file PATH or --jwks-url URL.")
            algorithms = [a.strip() for a in options["algorithms"].split(",") if a.strip()]
            ehr, created = ehr_register(
                iss=iss,
                jwks=jwks,
                jwks_url=options["jwks_url"] or "",
                name=options["name"].strip(),
                client_id=options["client_id"].strip(),
                algorithms=algorithms,
                other_asymmetric=options["allow_other_asymmetric"],
                smart_origins=options["smart_origin"],
                command=command,
            )
        except EhrRegistrationError as exc:
            raise CommandError(f"{exc.field}: {exc.message}") from None
        verb = "Registered" if created else "Updated"
        self.stdout.write(
            f"{verb} {ehr.iss} ({ehr.name or 'no name'}): {len(ehr.jwks['keys'])} keys, "
            f"algorithms {', '.join(ehr.algorithms)}, SMART client id {ehr.client_id or '(none)'}"
            + (f", SMART endpoints also at {', '.join(ehr.smart_origins)}." if ehr.smart_origins else ".")
        )
        return None

    def _read_file(self, path: Path) -> dict:
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise CommandError(f"--jwks-file: {path} cannot be read ({exc.strerror}).") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise CommandError(f"--jwks-file: {path} is not JSON ({exc}).") from None

    def _list(self, command: list[str]) -> None:
        for ehr in RegisteredEhr.objects.order_by("iss"):
            state = f"revoked {ehr.revoked_at:%Y-%m-%d}" if ehr.revoked else "active"
            source = ehr.jwks_url or "file"
            self.stdout.write(
                f"{ehr.iss}\t{ehr.name or '-'}\t{state}\tclient_id={ehr.client_id or '-'}\t"
                f"keys={len(ehr.jwks.get('keys', []))} from {source}\talgorithms={','.join(ehr.algorithms)}"
                f"\tsmart_origins={','.join(ehr.smart_origins) or '-'}"
            )
        AuditEvent.objects.create(user=None, action="list_ehrs", path=shlex.join(["manage.py", *command]))


def _command_line(options: dict) -> list[str]:
    """The command as given (for the audit record), rebuilt from the parsed options."""
    line = ["register_ehr"]
    if options.get("iss"):
        line.append(options["iss"])
    for flag in ("jwks_file", "jwks_url", "name", "client_id"):
        if options.get(flag):
            line += [f"--{flag.replace('_', '-')}", str(options[flag])]
    for origin in options.get("smart_origin") or []:
        line += ["--smart-origin", origin]
    if options.get("algorithms") and options["algorithms"] != ",".join(DEFAULT_ALGORITHMS):
        line += ["--algorithms", options["algorithms"]]
    flags = ("allow_other_asymmetric", "list", "revoke", "refresh")
    line += [f"--{flag.replace('_', '-')}" for flag in flags if options.get(flag)]
    return line
