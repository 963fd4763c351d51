"""The Model Facts label (Sendak et al., npj Digit Med 2020) and the HTI-1 source attributes of a
version, both built from its model card (selectors.model_card) and bundle.yaml: the HTML page, its PDF
and the JSON answer print the same dicts."""

from __future__ import annotations

from typing import Any

from models_registry.card_figures import percent
from models_registry.card_subgroups import UNDEFINED, figure_text
from models_registry.source_attributes import CATEGORIES, COMPUTED, NOT_PROVIDED

PERFORMANCE = (("auroc", "AUROC", 2), ("auprc", "AUPRC", 2), ("brier", "Brier score", 3), ("ece", "ECE", 3))
EXPLANATION_METHOD = (
    "SHAP values (interventional TreeExplainer, log-odds) of each prediction against the documented "
    "background set; they add up to the model output."
)


def _text(value: Any) -> str:
    if value is None or value == "" or value == []:
        return NOT_PROVIDED
    return "; ".join(value) if isinstance(value, list) else str(value)


def _attributes(spec: dict) -> dict:
    return spec.get("source_attributes") or {}


def _warnings(spec: dict) -> list[str]:
    value = spec.get("warnings")
    return [value] if isinstance(value, str) else list(value or [])


def performance_lines(card: dict) -> list[dict]:
    model = (card.get("performance") or {}).get("model") or {}
    lines = [{"label": label, "text": figure_text(model.get(key), d)} for key, label, d in PERFORMANCE]
    overall = _overall_subgroup_figures(card)
    for key, label in (
        ("calibration_intercept", "Calibration intercept"),
        ("calibration_slope", "Calibration slope"),
    ):
        if overall is not None:
            lines.append({"label": label, "text": figure_text(overall.get(key), 2)})
    return lines


def _overall_subgroup_figures(card: dict) -> dict | None:
    stored = card.get("subgroups") or {}
    if stored.get("status") != "ready" or not stored.get("subgroups"):
        return None
    overall = stored["subgroups"][0]["result"]["overall"]
    return None if overall.get("too_few") else overall["metrics"]


def subgroup_summary(card: dict) -> dict:
    """Per subgroup and group: n, events, AUROC and alerts per 100 at each tier, or too few to judge;
    and every disparity flag."""
    tables = card["subgroup_tables"]
    if tables["status"] != "ready":
        return {"status": tables["status"], "rows": [], "flags": []}
    keys = ["auroc", *(c["key"] for c in tables["columns"] if c["key"].startswith("alerts_per_100_"))]
    positions = [next(i for i, c in enumerate(tables["columns"]) if c["key"] == k) for k in keys]
    headings = [tables["columns"][i]["heading"] for i in positions]
    rows = []
    for table in tables["tables"]:
        for row in table["rows"][1:]:
            rows.append(
                {
                    "subgroup": table["label"],
                    "protected": table["protected"],
                    "group": row["group"],
                    "n": row["n"],
                    "events": row["events"],
                    "too_few": row["too_few"],
                    "cells": [] if row["too_few"] else [row["cells"][i]["text"] for i in positions],
                }
            )
    flags = [m for t in tables["tables"] for m in t["flags"]]
    return {"status": "ready", "headings": headings, "rows": rows, "flags": flags}


def model_facts(card: dict, spec: dict) -> dict:
    """Everything the label prints, in its order."""
    attributes = _attributes(spec)
    cohort = card["cohort"]
    return {
        "name": card["name"],
        "version": card["version"],
        "status": card["status"],
        "outcome": card["outcome"],
        "horizon_hours": card["horizon_hours"],
        "intended_use": _text(card.get("intended_use")),
        "when_not_to_use": _text(attributes.get("out_of_scope_use")),
        "warnings": _warnings(spec),
        "training_cohort": _text(attributes.get("inclusion_exclusion_criteria")),
        "training_relevance": _text(attributes.get("training_data_relevance")),
        "reference_cohort": (
            f"{cohort['reference_size']:,} held-out labelled patients, {cohort['events']:,} with the outcome"
            f" ({100 * (cohort['label_rate'] or 0):.1f}%)."
        ),
        "inputs": [f for f in card["features"] if f["decision_time"]],
        "protected": card["protected_characteristics"],
        "performance": performance_lines(card),
        "bootstrap": ((card.get("performance") or {}).get("model") or {}).get("bootstrap") or {},
        "subgroups": subgroup_summary(card),
        "tiers": [
            {
                "tier": tier,
                "threshold": percent(t["threshold"]),
                "alerts_per_100": figure_text(t["alerts_per_100"], 1) if t["alerts_per_100"] else UNDEFINED,
            }
            for tier, t in card["tiers"].items()
        ],
        "known_failure_modes": _text(card.get("known_failure_modes")),
        "explanation_method": EXPLANATION_METHOD,
        "background": f"{card['background']['size']:,} rows: {_text(card['background']['description'])}",
        "checks": [{"title": c["title"], "status": c["status"]} for c in card["checks"]],
        "registered_at": card["registered_at"],
        "registered_by": card["registered_by"],
        "promoted_at": card["promoted_at"],
        "promoted_by": card["promoted_by"],
        "developer": _text(attributes.get("developer")),
    }


def _computed(card: dict, attribute: str) -> str:
    if attribute == "intended_use":
        return _text(card.get("intended_use"))
    if attribute == "demographic_inputs":
        protected = card["protected_characteristics"]
        if not protected:
            return NOT_PROVIDED
        used = [p["label"] for p in protected if p["model_input"]]
        reported = [p["label"] for p in protected if not p["model_input"]]
        return f"Model inputs: {', '.join(used) or 'none of the protected characteristics declared'}." + (
            f" Reported but not inputs: {', '.join(reported)}." if reported else ""
        )
    if attribute == "validity_test_data":
        return "; ".join(f"{line['label']} {line['text']}" for line in performance_lines(card)) + (
            " (reference set held out from training, 95% bootstrap intervals)."
        )
    summary = subgroup_summary(card)  # fairness_test_data
    if summary["status"] != "ready":
        return NOT_PROVIDED
    flags = summary["flags"]
    return (
        f"Per-subgroup figures on the reference set over {len({r['subgroup'] for r in summary['rows']})}"
        f" subgroups; {len(flags)} disparity flag(s)" + (": " + " ".join(flags) if flags else ".")
    )


def source_attributes(card: dict, spec: dict) -> dict:
    """The HTI-1 source attributes as JSON: each with its value ("not provided" where the bundle is
    silent) and where it came from."""
    given = _attributes(spec)
    categories = []
    for category, title, attributes in CATEGORIES:
        items = []
        for attribute, attribute_title in attributes:
            if attribute in COMPUTED:
                value, source = _computed(card, attribute), "registry"
            elif attribute == "known_risks_and_limitations" and not given.get(attribute):
                value, source = _text(card.get("known_failure_modes")), "bundle.yaml known_failure_modes"
            else:
                value, source = _text(given.get(attribute)), f"bundle.yaml source_attributes.{attribute}"
            provided = value != NOT_PROVIDED
            items.append(
                {
                    "id": attribute,
                    "title": attribute_title,
                    "value": value,
                    "provided": provided,
                    "source": source if provided else None,
                }
            )
        categories.append({"id": category, "title": title, "attributes": items})
    return {
        "model": card["name"],
        "version": card["version"],
        "rule": "ONC HTI-1, 45 CFR 170.315(b)(11)(iv)(B): source attributes of a predictive DSI",
        "categories": categories,
    }
