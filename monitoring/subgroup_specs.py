"""Which subgroups a version's monitoring reports, and where each one's value comes from.

CONTRACT.md section 1: the subgroups bundle.yaml declares are "reported per subgroup on the model card
and in monitoring". So monitoring splits a window the way the card splits the reference set, with
the same labels, bands and value labels:

- a declared subgroup on a model input reads the posted feature value of each score;
- one on another reference column reads the patient's demographic of that name (sex, age, race,
  ethnicity: CONTRACT section 2), and is left out, and said so, when no such field exists;
- the patient demographics the bundle does not declare follow, with default age bands.

Unit and shift are always reported first (the caller adds them).
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.demographics import DEMOGRAPHIC_CATEGORIES, omb_category
from engine.subgroups import Subgroup
from models_registry.bundle_spec import parse_subgroups
from models_registry.models import ModelVersion

PATIENT_FIELDS = ("sex", "age", "race", "ethnicity")
DEFAULT_DEMOGRAPHICS = (
    Subgroup("sex", "Sex", protected=True),
    Subgroup("age", "Age", protected=True, bands=[18, 45, 65, 80]),
    Subgroup("race", "Race", protected=True),
    Subgroup("ethnicity", "Ethnicity", protected=True),
)


@dataclass(frozen=True)
class Monitored:
    spec: Subgroup
    source: str  # "feature" (a model input's posted value) or "patient" (a demographic field)


def monitored_subgroups(version: ModelVersion) -> tuple[list[Monitored], list[dict]]:
    """(what to report, in order; the declared subgroups monitoring cannot see, with the reason)."""
    features = [
        {"name": f.name, "label": f.label, "kind": f.kind, "decision_time": f.decision_time}
        for f in version.features.all()
    ]
    declared = parse_subgroups((version.spec or {}).get("subgroups"), features)
    out: list[Monitored] = []
    unseen: list[dict] = []
    for s in declared:
        spec = Subgroup(s["column"], s["label"], s["protected"], s["bands"], s["values"])
        if s["model_input"]:
            out.append(Monitored(spec, "feature"))
        elif s["column"] in PATIENT_FIELDS:
            out.append(Monitored(spec, "patient"))
        else:
            unseen.append(
                {
                    "column": s["column"],
                    "label": s["label"],
                    "reason": "not a model input and not a patient field of the scoring payloads "
                    f"({', '.join(PATIENT_FIELDS)})",
                }
            )
    covered = {m.spec.column for m in out} | {m.spec.label.lower() for m in out}
    covered |= {u["column"] for u in unseen} | {u["label"].lower() for u in unseen}
    for spec in DEFAULT_DEMOGRAPHICS:
        if spec.column not in covered and spec.label.lower() not in covered:
            out.append(Monitored(spec, "patient"))
    return out, unseen


def group_value(value, spec: Subgroup, source: str = "patient"):
    """A posted value as the reference set stores it, so the bundle's value labels ({0: male}) apply:
    yes/no as 1/0 (JSON booleans included), whole numbers without ".0". A patient's race or ethnicity
    becomes its OMB category (engine.demographics.omb_category), so that a code and its text meet in
    one group."""
    if source == "patient" and spec.column in DEMOGRAPHIC_CATEGORIES and value is not None:
        value = omb_category(value, spec.column)
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if spec.value_labels and value is not None:
        return str(value)  # parse_subgroups keys the labels by text
    return value
