from pathlib import Path

from django.core.management.base import BaseCommand

from demo import rhc as demo_rhc
from demo.training import train_demo_bundle


class Command(BaseCommand):
    help = (
        "Train the demo 30-day mortality model on the RHC cohort (SurvSet) and write a model bundle "
        "(bundle.yaml, model.json, background.parquet, reference.parquet, challenger.skops) to OUT_DIR."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "out_dir", type=Path, help="Directory to write the bundle into (created if needed)."
        )
        parser.add_argument(
            "--seed",
            type=int,
            default=demo_rhc.DEFAULT_SEED,
            help="Seed for splits and training (default 7).",
        )
        parser.add_argument(
            "--trees", type=int, default=300, help="Most boosting rounds (early stopping may use fewer)."
        )
        parser.add_argument(
            "--background-size", type=int, default=500, help="Rows in the SHAP background set."
        )

    def handle(self, *args, out_dir: Path, seed: int, trees: int, background_size: int, **options):
        result = train_demo_bundle(
            out_dir, seed=seed, n_estimators=trees, background_size=background_size, progress=True
        )
        self.stdout.write(f"Bundle written to {result.path.resolve()}")
        tiers = result.tiers
        self.stdout.write(
            f"Reference AUROC {result.reference_auroc:.3f} "
            f"(challenger {result.challenger_reference_auroc:.3f}); {result.n_trees} trees; "
            f"tiers high >= {tiers['high']}, medium >= {tiers['medium']}; trained in {result.seconds:.1f} s"
        )
