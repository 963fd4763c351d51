from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from models_registry.bundle import BundleError
from models_registry.services import model_register


class Command(BaseCommand):
    help = (
        "Verify a model bundle (a directory or a .zip, CONTRACT.md section 1) and register it as the next "
        "version of its model. Registering an identical bundle again returns the existing version."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", type=Path, help="Bundle directory or .zip file.")
        parser.add_argument(
            "--promote", action="store_true", help="Make this version production (retires the previous one)."
        )

    def handle(self, *args, path: Path, promote: bool, **options):
        try:
            version, created = model_register(path=path, promote=promote)
        except BundleError as exc:
            raise CommandError(f"Bundle rejected: {exc}") from exc
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
