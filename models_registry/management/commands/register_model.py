from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from models_registry.bundle import BundleError
from models_registry.services import PromotionRefused, model_register


class Command(BaseCommand):
    help = (
        "Verify a model bundle (a directory or a .zip, CONTRACT.md section 1) and register it as the next "
        "version of its model. Registering an identical bundle again returns the existing version. "
        "With --promote the version becomes production only if it clears the promotion gate (AUROC margin "
        "over the challenger, ECE and Brier not worse); otherwise nothing is registered, unless an admin "
        "(--user) overrides the gate with --override-reason."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", type=Path, help="Bundle directory or .zip file.")
        parser.add_argument(
            "--promote", action="store_true", help="Make this version production (retires the previous one)."
        )
        parser.add_argument(
            "--override-reason",
            help="With --promote: promote even though the promotion gate fails, for this written reason "
            "(audited; needs --user naming an admin).",
        )
        parser.add_argument(
            "--user",
            help="Username recorded as registering/promoting; must be an admin to override the gate.",
        )

    def handle(
        self, *args, path: Path, promote: bool, override_reason: str | None, user: str | None, **options
    ):
        if override_reason and not promote:
            raise CommandError("--override-reason only applies with --promote.")
        account = None
        if user:
            account = get_user_model().objects.filter(username=user).first()
            if account is None:
                raise CommandError(f"No user named {user!r}.")
        try:
            version, created = model_register(
                path=path, promote=promote, user=account, override_reason=override_reason
            )
        except BundleError as exc:
            raise CommandError(f"Bundle rejected: {exc}") from exc
        except PromotionRefused as exc:
            raise CommandError(f"Not registered: {exc}") from exc
        verb = "Registered" if created else "Already registered"
        self.stdout.write(
            f"{verb} {version.registered_model.name} version {version.version} ({version.status})"
        )
        checks = version.checks
        self.stdout.write(
            f"  expected_risk reproduced to {checks['reproduces_expected_risk']['max_abs_diff']:.1e}; "
            f"SHAP additivity error {checks['shap_additivity']['max_error']:.1e} "
            f"on {checks['shap_additivity']['sample_size']} reference rows"
        )
        engine = checks.get("shap_engine") or {}
        if engine:
            reason = f" ({engine['reason']})" if engine.get("reason") else ""
            self.stdout.write(f"  explained by the {engine['engine']} engine{reason}")
        gate = version.gate or {}
        if gate.get("applicable"):
            self.stdout.write(f"  promotion gate (AUROC margin {gate['margin']:g}): {gate['detail']}")
        for name in ("background_documentation", "model_randomisation"):
            if checks.get(name, {}).get("flagged"):
                self.stdout.write(f"  flagged: {name}")
