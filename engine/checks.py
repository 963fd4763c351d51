"""Registration checks that are judged, not pass/reject, and the promotion gate. Plain numpy/scipy.

A *flagged* check does not stop registration: it is stored with its figures and shown on the
model card, where a reviewer decides. The promotion gate decides whether a version may become
production without an admin's written override.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

# A unit or shift whose share of the background differs from its share of the reference set by
# more than this is flagged: the explanations' baseline then describes a different population.
MAX_SHARE_DIFFERENCE = 0.10
# Mean |SHAP| ranking of the real model vs. a copy with random leaf values: above this, the
# explanations barely depend on what the model learned (Adebayo et al., 2018) and are flagged.
RANDOMISATION_MAX_SPEARMAN = 0.8
RANDOMISATION_SEED = 0
DEFAULT_AUROC_MARGIN = 0.03
# Comparisons of floats computed the same way: equal within this counts as "not worse".
_EPS = 1e-12


def _shares(frame: pd.DataFrame, column: str) -> pd.Series:
    return frame[column].astype(str).value_counts(normalize=True)


def background_documentation(*, background: pd.DataFrame, reference: pd.DataFrame, description: str) -> dict:
    """Size, description, and unit/shift mix of the SHAP background against the reference set."""
    mixes: dict[str, dict] = {}
    reasons: list[str] = []
    for column in ("unit", "shift"):
        bg, ref = _shares(background, column), _shares(reference, column)
        levels = sorted(set(bg.index) | set(ref.index))
        counts = np.array(
            [
                [int((background[column].astype(str) == level).sum()) for level in levels],
                [int((reference[column].astype(str) == level).sum()) for level in levels],
            ]
        )
        if len(levels) > 1:
            chi2, p_value, _, _ = stats.chi2_contingency(counts)
        else:
            chi2, p_value = 0.0, 1.0
        differences = {level: float(bg.get(level, 0.0) - ref.get(level, 0.0)) for level in levels}
        worst_level = max(differences, key=lambda level: abs(differences[level]))
        worst = abs(differences[worst_level])
        mixes[column] = {
            "shares": {
                level: {
                    "background": round(float(bg.get(level, 0.0)), 4),
                    "reference": round(float(ref.get(level, 0.0)), 4),
                }
                for level in levels
            },
            "max_share_difference": round(worst, 4),
            "max_difference_level": worst_level,
            "chi2": round(float(chi2), 3),
            "p_value": float(p_value),
        }
        if worst > MAX_SHARE_DIFFERENCE:
            reasons.append(
                f"{column} '{worst_level}' is {bg.get(worst_level, 0.0):.0%} of the background but "
                f"{ref.get(worst_level, 0.0):.0%} of the reference set"
            )
    if not description.strip():
        reasons.append("bundle.yaml background.description is empty (size, units, shifts and period)")
    return {
        "passed": not reasons,
        "flagged": bool(reasons),
        "reasons": reasons,
        "size": len(background),
        "reference_size": len(reference),
        "description": description,
        "unit": mixes["unit"],
        "shift": mixes["shift"],
        "max_share_difference_allowed": MAX_SHARE_DIFFERENCE,
    }


def model_randomisation(
    *, real_shap: np.ndarray, randomised_shap: np.ndarray, feature_names: list[str], seed: int
) -> dict:
    """Spearman rank correlation of mean |SHAP| per feature, real model vs. randomised leaves."""
    real = np.abs(np.asarray(real_shap, dtype=np.float64)).mean(axis=0)
    randomised = np.abs(np.asarray(randomised_shap, dtype=np.float64)).mean(axis=0)
    rho = float(stats.spearmanr(real, randomised).statistic)
    flagged = not np.isfinite(rho) or rho > RANDOMISATION_MAX_SPEARMAN
    top = 5
    return {
        "passed": not flagged,
        "flagged": flagged,
        "spearman": round(rho, 4) if np.isfinite(rho) else None,
        "max_spearman": RANDOMISATION_MAX_SPEARMAN,
        "seed": seed,
        "rows": int(np.asarray(real_shap).shape[0]),
        "method": "leaf values replaced by seeded normal draws with the real leaves' spread",
        "top_features_real": [feature_names[i] for i in np.argsort(-real)[:top]],
        "top_features_randomised": [feature_names[i] for i in np.argsort(-randomised)[:top]],
    }


def promotion_gate(
    *, model: dict | None, challenger: dict | None, margin: float, auroc_difference=None
) -> dict:
    """The tiered-modelling gate: the model may be promoted over its interpretable challenger only
    if AUROC(model) >= AUROC(challenger) + margin and neither its ECE nor its Brier score is worse.

    `model` and `challenger` are `metrics.performance` results on the same reference set.
    """
    if challenger is None or model is None:
        return {
            "applicable": False,
            "passed": True,
            "margin": margin,
            "detail": "The bundle has no challenger, so there is nothing to compare against.",
            "criteria": [],
        }

    def value(summary: dict, metric: str) -> float:
        return float(summary[metric]["value"])

    criteria = [
        {
            "name": "auroc",
            "rule": f"AUROC(model) >= AUROC(challenger) + {margin:g}",
            "model": value(model, "auroc"),
            "challenger": value(challenger, "auroc"),
            "required": round(value(challenger, "auroc") + margin, 4),
            "passed": value(model, "auroc") + _EPS >= value(challenger, "auroc") + margin,
        },
        {
            "name": "ece",
            "rule": "ECE(model) <= ECE(challenger)",
            "model": value(model, "ece"),
            "challenger": value(challenger, "ece"),
            "required": value(challenger, "ece"),
            "passed": value(model, "ece") <= value(challenger, "ece") + _EPS,
        },
        {
            "name": "brier",
            "rule": "Brier(model) <= Brier(challenger)",
            "model": value(model, "brier"),
            "challenger": value(challenger, "brier"),
            "required": value(challenger, "brier"),
            "passed": value(model, "brier") <= value(challenger, "brier") + _EPS,
        },
    ]
    failed = [c for c in criteria if not c["passed"]]
    return {
        "applicable": True,
        "passed": not failed,
        "margin": margin,
        "criteria": criteria,
        "auroc_difference": auroc_difference,
        "detail": gate_message(criteria),
    }


def gate_message(criteria: list[dict]) -> str:
    failed = [c for c in criteria if not c["passed"]]
    if not failed:
        return "The model clears the promotion gate on the reference set."
    parts = [
        f"{c['name'].upper()} {c['model']:.4f} vs challenger {c['challenger']:.4f} "
        f"(needs {c['rule']}, i.e. {'>=' if c['name'] == 'auroc' else '<='} {c['required']:.4f})"
        for c in failed
    ]
    return "The promotion gate fails: " + "; ".join(parts) + "."
