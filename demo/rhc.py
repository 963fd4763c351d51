"""The demo cohort: the RHC study (Connors et al., JAMA 1996) as shipped in the SurvSet package.

5,735 adults admitted to the ICUs of five US teaching hospitals (1989-1994). Every value used
here was recorded on day 1 of the ICU stay. What is real and what is simulated:

Real (from the RHC data set)
    * The day-1 physiology, labs, age, sex, cancer status and DNR order (the features below).
    * The outcome: ``died_30d`` is death within 30 days of admission (``event == 1 and time <= 30``),
      about 33% of the cohort.
    * Right heart catheterisation in the first 24 hours (``fac_swang1``). It is documented as the
      ``rhc_day1`` feature with ``decision_time: false``: in a day-1 score it may be placed after
      the score is computed (and because of the score), so using it as an input is leakage. It is
      kept in the schema so the registry can show it and reject payloads and bundles that use it.

Cleaning (nothing else is changed)
    * RHC records weight 0 when the patient was not weighed: ``wtkilo1 == 0`` (515 admissions) is
      treated as missing. Urine output is missing for 3,028 admissions. Missing values stay
      missing (NaN): XGBoost routes them, and the UI shows them as "not measured".
    * SurvSet stores the numbers at reduced float precision (creatinine 2.399902); each value is
      rounded to the precision a lab or monitor reports (creatinine 2.4 mg/dL, pH 7.34).
    * Zeros for mean arterial pressure, heart rate and respiratory rate (arrest, apnoea on the
      ventilator) and two albumin values of 11 and 29 g/dL are kept as recorded; the plausible
      ranges in the schema are wide enough to contain every recorded value.
    * ``surv2md1`` (the SUPPORT model's own 2-month survival estimate) is not used: it is another
      model's output.

Simulated (the RHC data set has no units, times, beds or names)
    * ICU unit, derived from the primary disease category ``cat1``: CHF -> CCU; Coma -> NEURO-ICU;
      COPD -> RESP-ICU; MOSF with malignancy, lung cancer and colon cancer -> ONC-ICU; ARF, MOSF with
      sepsis and cirrhosis -> MICU. Sizes: MICU 3,941, RESP-ICU 457, CCU 456, ONC-ICU 445,
      NEURO-ICU 436.
    * Admission time of day: drawn per admission from a seeded RNG (uniform over the 24 hours);
      shift is "day" for admissions from 07:00 to 18:59 and "night" otherwise.
    * In the demo scoring run (``scoring_payloads``) each patient is scored 24 hours after the
      simulated admission (the end of ICU day 1), during the 24 hours before the run; observation
      times, beds, encounter ids and names ("Simulated patient 0123") are simulated deterministically
      from the patient id, and every source reference is an ``Observation/sim-...`` id with no URL.

Splits (seeded, stratified by the label): 20% reference (held out, labelled), 20% scoring (the
demo's scoring run), the rest for training; the SHAP background is drawn from the training part,
stratified by unit and shift.
"""

from __future__ import annotations

import functools
import hashlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from engine.shifts import shifts_of_hours

from .rhc_features import (  # noqa: F401 (re-exported: the cohort's features are part of its API)
    FEATURE_NAMES,
    FEATURES,
    INPUT_FEATURES,
    INPUT_NAMES,
    FeatureDef,
    feature_specs,
)

LABEL = "died_30d"
DEFAULT_SEED = 7
# The fixed time of the demo scoring run, so that re-running the demo posts the same payloads
# (the same external ids) and creates nothing twice.
DEMO_RUN_AT = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)

UNIT_BY_CATEGORY = {
    "CHF": "CCU",
    "Coma": "NEURO-ICU",
    "COPD": "RESP-ICU",
    "MOSF w/Malignancy": "ONC-ICU",
    "Lung Cancer": "ONC-ICU",
    "Colon Cancer": "ONC-ICU",
    "ARF": "MICU",
    "MOSF w/Sepsis": "MICU",
    "Cirrhosis": "MICU",
}


@functools.lru_cache(maxsize=1)
def _rhc_raw() -> pd.DataFrame:
    from SurvSet.data import SurvLoader

    with warnings.catch_warnings():
        # SurvSet's own loader touches numpy.core, deprecated in numpy 2; nothing we can change.
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=r"numpy\.core")
        return SurvLoader().load_dataset("rhc")["df"]


def load_cohort(seed: int = DEFAULT_SEED) -> pd.DataFrame:
    """The RHC cohort, one row per admission: `pid`, the features (encoded as model inputs:
    binary 0/1, categorical as the index in `categories`, NaN for missing), `unit`, `shift`,
    `admit_minute` (simulated minute of the day) and the label `died_30d`."""
    raw = _rhc_raw()
    out = pd.DataFrame({"pid": raw["pid"].astype(int)})
    for f in FEATURES:
        col = raw[f.column]
        if f.kind == "numeric":
            values = col.astype(float)
            if f.name == "weight":
                values = values.where(values != 0)  # 0 means "not weighed" in RHC
            if f.decimals is not None:
                values = values.round(f.decimals)
            out[f.name] = values
        elif f.kind == "binary":
            out[f.name] = np.where(col.isna(), np.nan, (col.astype(str) == f.true_value).astype(float))
        else:
            index = {c: float(i) for i, c in enumerate(f.categories)}
            out[f.name] = col.astype(str).map(index).astype(float)
    out["unit"] = raw["fac_cat1"].astype(str).map(UNIT_BY_CATEGORY)
    if out["unit"].isna().any():
        raise ValueError("RHC disease category without a unit mapping")
    rng = np.random.default_rng(seed)
    out["admit_minute"] = rng.integers(0, 24 * 60, size=len(out))
    out["shift"] = shifts_of_hours(out["admit_minute"] // 60)
    out[LABEL] = ((raw["event"] == 1) & (raw["time"] <= 30)).astype(int)
    # Recorded, never a model input: reported per subgroup on the model card (bundle.yaml subgroups).
    out["race"] = raw["fac_race"].astype(str)
    return out.reset_index(drop=True)


@dataclass(frozen=True)
class Splits:
    train: pd.DataFrame
    background: pd.DataFrame
    reference: pd.DataFrame
    scoring: pd.DataFrame


def _stratified_take(frame: pd.DataFrame, by: list[str], n: int, rng: np.random.Generator) -> pd.Index:
    """Index of about n rows of frame, allocated proportionally over the strata in `by`."""
    if n >= len(frame):
        return frame.index
    groups = list(frame.groupby(by if len(by) > 1 else by[0], sort=True).groups.values())
    # Largest-remainder allocation: proportional per stratum and exactly n in total.
    quotas = np.array([n * len(idx) / len(frame) for idx in groups])
    counts = np.floor(quotas).astype(int)
    for i in np.argsort(-(quotas - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    chosen: list = []
    for idx, k in zip(groups, counts, strict=True):
        chosen.extend(rng.choice(np.asarray(idx), size=min(int(k), len(idx)), replace=False).tolist())
    return pd.Index(sorted(chosen))


def split_cohort(
    cohort: pd.DataFrame,
    *,
    seed: int = DEFAULT_SEED,
    reference_fraction: float = 0.2,
    scoring_fraction: float = 0.2,
    background_size: int = 500,
) -> Splits:
    """Deterministic splits: reference and scoring stratified by label, background from train
    stratified by unit and shift."""
    rng = np.random.default_rng(seed + 1)
    reference_idx = _stratified_take(cohort, [LABEL], int(round(reference_fraction * len(cohort))), rng)
    rest = cohort.drop(index=reference_idx)
    scoring_idx = _stratified_take(rest, [LABEL], int(round(scoring_fraction * len(cohort))), rng)
    train = rest.drop(index=scoring_idx)
    background_idx = _stratified_take(train, ["unit", "shift"], background_size, rng)
    return Splits(
        train=train.reset_index(drop=True),
        background=cohort.loc[background_idx].reset_index(drop=True),
        reference=cohort.loc[reference_idx].reset_index(drop=True),
        scoring=cohort.loc[scoring_idx].reset_index(drop=True),
    )


def _unit_interval(*parts: object) -> float:
    """A deterministic number in [0, 1) from the parts (stable across processes, unlike hash())."""
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


# How long before the day-1 score each source's value was typically observed: (min, max) minutes.
_OBSERVED_BEFORE_MINUTES = {"monitor": (5, 60), "LIS": (60, 18 * 60), "EHR": (30, 20 * 60)}


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _payload_value(f: FeatureDef, encoded: float) -> object:
    if pd.isna(encoded):
        return None
    if f.kind == "binary":
        return bool(encoded)
    if f.kind == "categorical":
        return f.categories[int(encoded)]
    if f.decimals == 0:
        return int(encoded)
    return float(encoded)


def _demographics(row) -> dict:
    """The patient's sex (FHIR administrative gender), age and race as the RHC study recorded them."""
    out: dict = {}
    if not pd.isna(row.sex_female):
        out["sex"] = "female" if row.sex_female == 1 else "male"
    if not pd.isna(row.age):
        out["age"] = int(row.age)
    if isinstance(row.race, str) and row.race not in ("", "nan"):
        out["race"] = row.race
    return out


def _payload_features(row, *, pid: int, patient_id: str, scored_at: datetime, seed: int) -> dict[str, dict]:
    """A scoring row's payload features: admission data observed at admission (24 h before scoring),
    others a fixed pseudo-random time before scoring by their source; missing values are null."""
    admitted_at = scored_at - timedelta(hours=24)
    features: dict[str, dict] = {}
    for f in INPUT_FEATURES:
        value = _payload_value(f, getattr(row, f.name))
        if value is None:
            features[f.name] = {"value": None}
            continue
        if f.source == "ADT":
            observed_at = admitted_at
        else:
            low, high = _OBSERVED_BEFORE_MINUTES[f.source]
            minutes = low + int(_unit_interval(seed, pid, f.name) * (high - low))
            observed_at = scored_at - timedelta(minutes=minutes)
        entry: dict = {"value": value}
        if f.unit:
            entry["unit"] = f.unit
        entry["observed_at"] = _iso(observed_at)
        entry["source"] = {"system": f.source, "reference": f"Observation/sim-{patient_id}-{f.name}"}
        features[f.name] = entry
    return features


def scoring_payloads(
    *,
    model_name: str,
    model_version: int | None = None,
    run_at: datetime | None = None,
    limit: int | None = None,
    seed: int = DEFAULT_SEED,
) -> Iterator[dict]:
    """CONTRACT.md section 2 prediction payloads for the demo's scoring split (simulated patients).

    Deterministic for a given run_at (default DEMO_RUN_AT), so posting them twice is idempotent.
    Each patient is scored at the end of ICU day 1 (24 h after the simulated admission), at the
    latest such time not after run_at. Missing values are sent as null. No `risk` is sent; the
    decision_time: false feature (rhc_day1) is never sent.
    """
    run_at = (run_at or DEMO_RUN_AT).astimezone(UTC).replace(microsecond=0)
    scoring = split_cohort(load_cohort(seed), seed=seed).scoring
    if limit is not None:
        scoring = scoring.head(limit)
    run_key = run_at.strftime("%Y-%m-%dT%H:%MZ")
    midnight = run_at.replace(hour=0, minute=0, second=0)
    for row in scoring.itertuples(index=False):
        pid = int(row.pid)
        patient_id = f"RHC-{pid:04d}"
        scored_at = midnight + timedelta(minutes=int(row.admit_minute))
        if scored_at > run_at:
            scored_at -= timedelta(days=1)
        features = _payload_features(row, pid=pid, patient_id=patient_id, scored_at=scored_at, seed=seed)
        payload: dict = {
            "external_id": f"rhc-demo/{run_key}/{patient_id}",
            "model": model_name,
        }
        if model_version is not None:
            payload["model_version"] = model_version
        payload["patient"] = {
            "id": patient_id,
            "display_name": f"Simulated patient {pid:04d}",
            "unit": row.unit,
            "bed": str(1 + int(_unit_interval("bed", pid) * 24)),
            # Real RHC values, for subgroup monitoring (never shown on the worklist).
            **_demographics(row),
        }
        payload["encounter_id"] = f"RHC-E-{pid:04d}"
        payload["scored_at"] = _iso(scored_at)
        payload["features"] = features
        yield payload
