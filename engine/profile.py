"""A model version's explanation profile, fitted once from its reference set. No Django.

`profile_fit` returns JSON-able parameters and the reference SHAP matrix (stored as .npy by the
service). `LoadedProfile` is what a worker keeps in memory per version: the parameters, the
reference SHAP with its NearestNeighbors index, the reference outcomes, risks and units, the
Venn-Abers table and the OOD model.

`patients_uncertainty` and `patients_similar` explain a batch of patients at once (one
out-of-distribution distance pass and one neighbour query for the batch); `patient_uncertainty` and
`patient_similar` are the same for one patient.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.neighbors import NearestNeighbors

from engine import neighbours, stability, uncertainty
from engine import treeshap as core

# Defaults; each can be overridden by settings.EXPLANATION_ENGINE.
DEFAULTS = {
    "seed": 20240601,
    "calibration_bins": 10,
    "conformal_alpha": 0.10,
    "ood_k": 10,
    # A patient whose k-NN distance is above this percentile of the reference's own is flagged
    # out of distribution, and the model abstains.
    "ood_percentile": 99.0,
    # "Key" inputs: the features with the largest mean |SHAP| on the reference set.
    "key_features": 5,
    # The model abstains when at least this many key inputs are not measured.
    "key_missing_abstain": 3,
    "neighbours_k": 10,
    "stability_perturbations": 20,
    "stability_threshold": 0.6,
    # Background rows used for the stability re-explanations (a seeded subsample; the stored SHAP
    # values use the whole background). Keeps N perturbations within the latency budget.
    "stability_background": 100,
}
# Options read when an explanation is computed (the others are fitted into the profile).
RUNTIME_OPTIONS = (
    "key_missing_abstain",
    "neighbours_k",
    "stability_perturbations",
    "stability_threshold",
    "stability_background",
)


def _calibration_fit(risks: np.ndarray, labels: np.ndarray, opts: dict) -> tuple[dict, dict]:
    """(calibration, conformal) params: fitted on one half of the reference set, checked on the other."""
    fit, check = uncertainty.split_halves(labels, opts["seed"])
    bins = uncertainty.calibration_bins(risks[fit], labels[fit], opts["calibration_bins"])
    alpha = opts["conformal_alpha"]
    threshold = uncertainty.conformal_threshold(risks[fit], labels[fit], alpha)
    coverage = uncertainty.conformal_coverage(risks[check], labels[check], threshold)
    # Calibration in the check half, per bin of the fit half: is its observed rate inside the
    # fit half's 95% interval? (Both halves are noisy, so expect fewer than 95% of bins.)
    check_bins = []
    for b in bins:
        mask = (risks[check] >= b["low"]) & (risks[check] < b["high"])
        n = int(mask.sum())
        observed = float(labels[check][mask].mean()) if n else None
        check_bins.append(
            {
                "n": n,
                "observed": observed,
                "inside": observed is not None and b["ci"][0] <= observed <= b["ci"][1],
            }
        )
    calibration = {
        "fit_size": int(len(fit)),
        "check_size": int(len(check)),
        "bins": bins,
        "check_bins": check_bins,
        "venn_abers": {"risks": risks[fit].tolist(), "labels": labels[fit].tolist()},
    }
    conformal = {
        "alpha": alpha,
        "nominal": 1 - alpha,
        "threshold": threshold,
        "coverage_check_half": coverage,
    }
    return calibration, conformal


def profile_fit(
    *,
    explainer,
    reference: pd.DataFrame,
    feature_names: list[str],
    features: list[dict],
    label: str,
    predict_risk: Callable[[np.ndarray], np.ndarray],
    options: dict | None = None,
) -> tuple[dict, np.ndarray]:
    """Fit the profile on the reference set; return (params, reference SHAP in log-odds).

    features: the model inputs' specs in model order ({"name", "kind", "unit", "precision", ...}).
    """
    opts = {**DEFAULTS, **(options or {})}
    rows = reference[feature_names].to_numpy(dtype=np.float64)
    labels = reference[label].to_numpy().astype(int)
    attribution = core.explain(explainer, rows)
    risks = np.asarray(predict_risk(rows), dtype=np.float64)

    mean_abs = np.abs(attribution.values).mean(axis=0)
    order = np.argsort(-mean_abs, kind="stable")
    key = [feature_names[i] for i in order[: opts["key_features"]]]

    calibration, conformal = _calibration_fit(risks, labels, opts)
    ood = uncertainty.ood_fit(rows, k=opts["ood_k"])
    ood_threshold = float(np.percentile(ood.reference_distances, opts["ood_percentile"]))
    precision = stability.precision_for(features)
    params = {
        "options": opts,
        "feature_names": feature_names,
        "reference_size": len(reference),
        "base_value": attribution.base_value,
        "background_size": attribution.background_size,
        "mean_abs_shap": dict(zip(feature_names, mean_abs.tolist(), strict=True)),
        "key_features": key,
        "calibration": calibration,
        "conformal": conformal,
        "ood": {**ood.to_params(), "percentile": opts["ood_percentile"], "threshold": ood_threshold},
        "precision": precision.to_params(),
    }
    return params, attribution.values


@dataclass
class LoadedProfile:
    params: dict
    reference_shap: np.ndarray
    index: NearestNeighbors
    labels: np.ndarray
    expected_risk: np.ndarray
    units: list[str]
    ood: uncertainty.OodModel
    venn_abers: uncertainty.VennAbersTable
    precision: stability.Precision
    lower: np.ndarray  # plausible range per input (NaN when none), for clipping perturbations
    upper: np.ndarray

    def options(self, runtime: dict | None = None) -> dict:
        """The profile's fitted options, with the runtime ones taken from `runtime` when given."""
        current = {k: v for k, v in (runtime or {}).items() if k in RUNTIME_OPTIONS}
        return {**self.params["options"], **current}


def profile_load(
    params: dict,
    reference_shap: np.ndarray,
    reference: pd.DataFrame,
    label: str,
    lower: np.ndarray,
    upper: np.ndarray,
) -> LoadedProfile:
    names = params["feature_names"]
    va = params["calibration"]["venn_abers"]
    return LoadedProfile(
        params=params,
        reference_shap=reference_shap,
        index=neighbours.neighbour_index(reference_shap),
        labels=reference[label].to_numpy().astype(int),
        expected_risk=reference["expected_risk"].to_numpy(dtype=np.float64),
        units=[str(u) for u in reference["unit"]] if "unit" in reference else [""] * len(reference),
        ood=uncertainty.ood_model_from_params(params["ood"], reference[names].to_numpy(dtype=np.float64)),
        venn_abers=uncertainty.venn_abers_table(np.asarray(va["risks"]), np.asarray(va["labels"])),
        precision=stability.Precision.from_params(params["precision"]),
        lower=lower,
        upper=upper,
    )


def _percent(value: float) -> str:
    return f"{100 * value:.0f}%"


def _abstain_reasons(
    params: dict,
    opts: dict,
    *,
    percentile: float,
    ood_flag: bool,
    missing: list[str],
    comparable: bool = True,
) -> list[str]:
    """Why the model abstains for this patient: out of distribution (or not comparable with the
    reference patients at all), or too many key inputs missing."""
    reasons = []
    if not comparable:
        reasons.append(
            "This patient shares too few measured inputs with the reference patients to be compared "
            "with them: the model was not validated on patients like this."
        )
    elif ood_flag:
        reasons.append(
            f"This patient's values are further from the reference patients than "
            f"{percentile:.1f}% of the reference patients are from each other (threshold: the "
            f"{params['ood']['percentile']:g}th percentile): the model was not validated on "
            "patients like this."
        )
    if len(missing) >= opts["key_missing_abstain"]:
        reasons.append(
            f"{len(missing)} of the {len(params['key_features'])} most influential inputs are not measured "
            f"({', '.join(missing)})."
        )
    return reasons


def _calibration_summary(b: dict, outcome: str) -> str:
    observed = b["observed"]
    return (
        f"Of {b['n']} reference patients scored {b['low']:.2f}-{b['high']:.2f}, "
        f"{_percent(observed)} ({_percent(b['ci'][0])}-{_percent(b['ci'][1])}) had the outcome ({outcome})."
        if observed is not None
        else "No reference patients were scored in this range."
    )


def patients_uncertainty(
    profile: LoadedProfile,
    rows: np.ndarray,
    risks: np.ndarray | list[float],
    outcome: str,
    options: dict | None = None,
) -> list[dict]:
    """The uncertainty block of each patient's explanation, with the abstention decision: one dict
    per row of `rows` (model inputs, NaN where not measured) and its risk."""
    params = profile.params
    opts = options or profile.options()
    rows = np.atleast_2d(np.asarray(rows, dtype=np.float64))
    risks = np.asarray(risks, dtype=np.float64).reshape(-1)
    ends = uncertainty.venn_abers_many(profile.venn_abers, risks).tolist()
    distances, percentiles = uncertainty.ood_scores(profile.ood, rows)
    names = params["feature_names"]
    key = params["key_features"]
    not_measured = ~np.isfinite(rows[:, [names.index(n) for n in key]])
    conformal = params["conformal"]
    out = []
    for r, risk in enumerate(risks.tolist()):
        low, high = ends[r]
        distance, percentile = float(distances[r]), float(percentiles[r])
        # No distance when the patient shares too few measured inputs with the reference patients
        # to be compared with them (all inputs not measured, say): never validated on such a patient.
        comparable = math.isfinite(distance)
        b = uncertainty.calibration_bin(params["calibration"]["bins"], risk)
        outcome_set = uncertainty.conformal_set(risk, conformal["threshold"])
        ood_flag = not comparable or distance > params["ood"]["threshold"]
        missing = [n for n, m in zip(key, not_measured[r].tolist(), strict=True) if m]
        reasons = _abstain_reasons(
            params, opts, percentile=percentile, ood_flag=ood_flag, missing=missing, comparable=comparable
        )
        out.append(
            {
                "interval": {"method": "venn-abers", "low": low, "high": high, "units": "probability"},
                "calibration": {
                    "bin": [b["low"], b["high"]],
                    "n": b["n"],
                    "events": b["events"],
                    "observed_rate": b["observed"],
                    "ci": b["ci"],
                    "ci_level": 0.95,
                    "summary": _calibration_summary(b, outcome),
                },
                "conformal": {
                    "level": conformal["nominal"],
                    "outcome_set": ["event" if o == 1 else "no event" for o in outcome_set],
                    "coverage_measured": conformal["coverage_check_half"],
                },
                "ood": {
                    "distance": distance if comparable else None,
                    "reference_percentile": percentile,
                    "threshold_percentile": params["ood"]["percentile"],
                    "flag": bool(ood_flag),
                },
                "key_features": {"names": key, "not_measured": missing},
                "abstain": bool(reasons),
                "abstain_reason": " ".join(reasons),
            }
        )
    return out


def patient_uncertainty(
    profile: LoadedProfile, row: np.ndarray, risk: float, outcome: str, options: dict | None = None
) -> dict:
    """The uncertainty block of one explanation, with the abstention decision."""
    return patients_uncertainty(profile, np.atleast_2d(row), [risk], outcome, options)[0]


def patients_similar(
    profile: LoadedProfile, shap_rows: np.ndarray, outcome: str, options: dict | None = None
) -> list[dict]:
    """The similar-patients block of each patient's explanation, one dict per row of `shap_rows`."""
    k = int((options or profile.options())["neighbours_k"])
    results = neighbours.similar_patients_many(
        index=profile.index,
        reference_shap=profile.reference_shap,
        shap_rows=shap_rows,
        labels=profile.labels,
        expected_risk=profile.expected_risk,
        units=profile.units,
        names=profile.params["feature_names"],
        k=k,
    )
    for result in results:
        result["summary"] = (
            f"{result['events']} of {result['k']} similar patients had the outcome ({outcome})."
        )
        result["space"] = "SHAP (log-odds), euclidean"
    return results


def patient_similar(
    profile: LoadedProfile, shap_row: np.ndarray, outcome: str, options: dict | None = None
) -> dict:
    return patients_similar(profile, np.atleast_2d(shap_row), outcome, options)[0]
