"""The RHC demo cohort's features: SurvSet column, label, unit, source, code, kind, plausible
range and reporting precision of each (see demo.rhc for what is real and what is simulated)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FeatureDef:
    name: str
    column: str  # column in the SurvSet frame
    label: str
    unit: str | None
    source: str
    code: str | None
    kind: str  # numeric | binary | categorical
    range: tuple[float, float]
    decision_time: bool = True
    mutable: bool = True
    decimals: int | None = None  # rounding to reporting precision (numeric only)
    # Where a value is an ordinary observation in an ICU (engine.quality flags the rest).
    expected: tuple[float, float] | None = None
    fixed_reason: str | None = None  # why a what-if may not change it (mutable=False)
    categories: tuple[str, ...] = ()
    true_value: str | None = None  # binary: the SurvSet level that means true


FEATURES: tuple[FeatureDef, ...] = (
    FeatureDef(
        "age",
        "num_age",
        "Age",
        "years",
        "ADT",
        None,
        "numeric",
        (0, 120),
        mutable=False,
        decimals=0,
        fixed_reason="a patient characteristic",
    ),
    FeatureDef(
        "sex_female",
        "fac_sex",
        "Sex: female",
        None,
        "ADT",
        None,
        "binary",
        (0, 1),
        mutable=False,
        fixed_reason="a patient characteristic",
        true_value="Female",
    ),
    FeatureDef(
        "apache_aps",
        "num_aps1",
        "APACHE III acute physiology score",
        "points",
        "EHR",
        None,
        "numeric",
        (0, 252),
        decimals=0,
        mutable=False,
        fixed_reason="a composite score of the day's worst physiology, not a value care sets directly",
    ),
    FeatureDef(
        "coma_score",
        "num_scoma1",
        "Coma score (SUPPORT, from Glasgow Coma Scale)",
        "points",
        "EHR",
        None,
        "numeric",
        (0, 100),
        decimals=0,
        mutable=False,
        fixed_reason="a neurological assessment score, not a value care sets directly",
    ),
    FeatureDef(
        "map",
        "num_meanbp1",
        "Mean arterial pressure",
        "mmHg",
        "monitor",
        "LOINC:8478-0",
        "numeric",
        (0, 300),
        decimals=0,
        expected=(20, 200),
    ),
    FeatureDef(
        "heart_rate",
        "num_hrt1",
        "Heart rate",
        "/min",
        "monitor",
        "LOINC:8867-4",
        "numeric",
        (0, 300),
        decimals=0,
        # 250 is where the RHC recordings pile up (a monitor's ceiling), not a heart rate.
        expected=(20, 240),
    ),
    FeatureDef(
        "resp_rate",
        "num_resp1",
        "Respiratory rate",
        "/min",
        "monitor",
        "LOINC:9279-1",
        "numeric",
        (0, 120),
        decimals=0,
        expected=(2, 80),
    ),
    FeatureDef(
        "temperature",
        "num_temp1",
        "Temperature",
        "°C",
        "monitor",
        "LOINC:8310-5",
        "numeric",
        (25, 45),
        decimals=1,
        expected=(30, 43),
    ),
    FeatureDef(
        "wbc",
        "num_wblc1",
        "White blood cells",
        "10³/µL",
        "LIS",
        "LOINC:6690-2",
        "numeric",
        (0, 250),
        decimals=1,
        expected=(0.1, 200),
    ),
    FeatureDef(
        "hematocrit",
        "num_hema1",
        "Hematocrit",
        "%",
        "LIS",
        "LOINC:4544-3",
        "numeric",
        (0, 80),
        decimals=1,
        expected=(10, 70),
    ),
    FeatureDef(
        "sodium",
        "num_sod1",
        "Sodium",
        "mmol/L",
        "LIS",
        "LOINC:2951-2",
        "numeric",
        (90, 200),
        decimals=0,
        expected=(100, 180),
    ),
    FeatureDef(
        "potassium",
        "num_pot1",
        "Potassium",
        "mmol/L",
        "LIS",
        "LOINC:2823-3",
        "numeric",
        (0.5, 15),
        decimals=1,
        expected=(1.5, 10),
    ),
    FeatureDef(
        "creatinine",
        "num_crea1",
        "Creatinine",
        "mg/dL",
        "LIS",
        "LOINC:2160-0",
        "numeric",
        (0, 30),
        decimals=1,
        expected=(0.1, 25),
    ),
    FeatureDef(
        "bilirubin",
        "num_bili1",
        "Bilirubin, total",
        "mg/dL",
        "LIS",
        "LOINC:1975-2",
        "numeric",
        (0, 80),
        decimals=1,
        expected=(0.1, 60),
    ),
    FeatureDef(
        "albumin",
        "num_alb1",
        "Albumin",
        "g/dL",
        "LIS",
        "LOINC:1751-7",
        "numeric",
        (0, 30),
        decimals=1,
        expected=(0.5, 7),
    ),
    FeatureDef(
        "ph",
        "num_ph1",
        "Arterial pH",
        None,
        "LIS",
        "LOINC:2744-1",
        "numeric",
        (6.5, 8.0),
        decimals=2,
        expected=(6.7, 7.8),
    ),
    FeatureDef(
        "paco2",
        "num_paco21",
        "PaCO2",
        "mmHg",
        "LIS",
        "LOINC:2019-8",
        "numeric",
        (0, 200),
        decimals=0,
        expected=(10, 160),
    ),
    FeatureDef(
        "pf_ratio",
        "num_pafi1",
        "PaO2/FiO2 ratio",
        "mmHg",
        "LIS",
        "LOINC:50984-4",
        "numeric",
        (0, 1000),
        decimals=0,
        expected=(20, 700),
    ),
    FeatureDef(
        "weight",
        "num_wtkilo1",
        "Weight",
        "kg",
        "EHR",
        "LOINC:29463-7",
        "numeric",
        (1, 300),
        decimals=1,
        expected=(25, 250),
    ),
    FeatureDef(
        "urine_output_24h",
        "num_urin1",
        "Urine output, 24 h",
        "mL",
        "EHR",
        "LOINC:9187-6",
        "numeric",
        (0, 15000),
        decimals=0,
    ),
    FeatureDef(
        "cancer",
        "fac_ca",
        "Cancer",
        None,
        "EHR",
        None,
        "categorical",
        (0, 2),
        mutable=False,
        fixed_reason="a diagnosis, not changed by today's care",
        categories=("No", "Yes", "Metastatic"),
    ),
    FeatureDef(
        "dnr_day1",
        "fac_dnr1",
        "Do-not-resuscitate order on day 1",
        None,
        "EHR",
        None,
        "binary",
        (0, 1),
        mutable=False,
        fixed_reason="a goals-of-care decision made with the patient and family, not a treatment",
        true_value="Yes",
    ),
    FeatureDef(
        "rhc_day1",
        "fac_swang1",
        "Right heart catheterisation in the first 24 h",
        None,
        "EHR",
        None,
        "binary",
        (0, 1),
        decision_time=False,
        true_value="RHC",
    ),
)

INPUT_FEATURES: tuple[FeatureDef, ...] = tuple(f for f in FEATURES if f.decision_time)
INPUT_NAMES: list[str] = [f.name for f in INPUT_FEATURES]
FEATURE_NAMES: list[str] = [f.name for f in FEATURES]


def feature_specs() -> list[dict]:
    """The `features` list of bundle.yaml."""
    specs = []
    for f in FEATURES:
        spec: dict = {"name": f.name, "label": f.label}
        if f.unit:
            spec["unit"] = f.unit
        spec["source"] = f.source
        if f.code:
            spec["code"] = f.code
        spec["kind"] = f.kind
        if f.kind == "categorical":
            spec["categories"] = list(f.categories)
        if f.kind == "numeric":
            spec["range"] = [float(f.range[0]), float(f.range[1])]
        if f.expected is not None:
            spec["expected"] = [float(f.expected[0]), float(f.expected[1])]
        spec["decision_time"] = f.decision_time
        spec["mutable"] = f.mutable
        if f.fixed_reason:
            spec["fixed_reason"] = f.fixed_reason
        specs.append(spec)
    return specs
