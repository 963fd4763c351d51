"""The subgroup part of the model card: the stored figures (ModelVersion.subgroups) as the rows the
page, the Model Facts label and its PDF print, and the "Protected characteristics" list.

A subgroup under the size floor is "too few to judge": its row carries n and events, never a metric.
"""

from __future__ import annotations

from typing import Any

TOO_FEW = "too few to judge"
UNDEFINED = "—"
# (key, heading, decimals) in the order the table shows them; tier columns follow.
METRICS = (
    ("auroc", "AUROC", 2),
    ("auprc", "AUPRC", 2),
    ("brier", "Brier", 3),
    ("ece", "ECE", 3),
    ("calibration_intercept", "Calibration intercept", 2),
    ("calibration_slope", "Calibration slope", 2),
)
TIER_METRICS = (("sensitivity", "Sensitivity", 2), ("ppv", "PPV", 2), ("alerts_per_100", "Alerts per 100", 1))
SHAP_FEATURES_SHOWN = 8


def figure_text(figure: dict | None, decimals: int) -> str:
    """'0.73 (0.68–0.77)', or '—' where the figure is undefined (one class only, no alerts)."""
    if not figure or figure.get("value") is None:
        return UNDEFINED
    text = f"{figure['value']:.{decimals}f}"
    if figure.get("ci_low") is not None and figure.get("ci_high") is not None:
        text += f" ({figure['ci_low']:.{decimals}f}–{figure['ci_high']:.{decimals}f})"
    return text


def figure_parts(figure: dict | None, decimals: int) -> dict:
    """{"value": "0.73", "ci": "0.68–0.77"} for the card's cells (the interval printed under it)."""
    text = figure_text(figure, decimals)
    value, _, ci = text.partition(" (")
    return {"value": value, "ci": ci.rstrip(")"), "text": text}


def columns(tiers: list[str]) -> list[dict]:
    out = [{"key": k, "heading": h, "decimals": d} for k, h, d in METRICS]
    for tier in tiers:
        out += [{"key": f"{k}_{tier}", "heading": f"{h} ({tier})", "decimals": d} for k, h, d in TIER_METRICS]
    return out


def _row(group: str, entry: dict, cols: list[dict]) -> dict:
    row: dict[str, Any] = {"group": group, "n": entry["n"], "events": entry.get("events")}
    if entry.get("too_few"):
        return {**row, "too_few": True, "cells": []}
    metrics = entry["metrics"]
    return {
        **row,
        "too_few": False,
        "cells": [figure_parts(metrics.get(c["key"]), c["decimals"]) for c in cols],
    }


def _shap_cells(entry: dict, shown: list[str]) -> list[str] | None:
    """'0.412 (0.380–0.447)': mean |SHAP| with its bootstrap interval (stored since issue 18's fix;
    a version computed before shows the value alone)."""
    values, cis = entry.get("mean_abs_shap"), entry.get("mean_abs_shap_ci") or {}
    if not values:
        return None
    return [figure_text({"value": values[f], **cis.get(f, {})}, 3) for f in shown]


def _shap(result: dict, order: list[str]) -> dict:
    overall = result["overall"].get("mean_abs_shap") or {}
    shown = sorted(overall, key=overall.get, reverse=True)[:SHAP_FEATURES_SHOWN]
    rows = [{"group": "All patients", "values": _shap_cells(result["overall"], shown) or []}]
    for group in order:
        rows.append({"group": group, "values": _shap_cells(result["groups"][group], shown)})
    return {"features": shown, "rows": rows}


def _disparity(result: dict, tiers: list[str]) -> list[dict]:
    out = []
    for tier in tiers:
        eod = result["disparity"]["equalized_odds_difference"].get(tier)
        ratio = result["disparity"]["alert_rate_ratio"].get(tier) or {}
        out.append(
            {
                "tier": tier,
                "equalized_odds_difference": UNDEFINED if eod is None else f"{eod:.2f}",
                "alert_rate_ratio": UNDEFINED if ratio.get("ratio") is None else f"{ratio['ratio']:.2f}",
                "lowest": ratio.get("lowest"),
                "highest": ratio.get("highest"),
            }
        )
    return out


def subgroup_tables(stored: dict | None) -> dict:
    """{"status", "error", "settings", "columns", "tables": [...]} for the card's subgroup section."""
    stored = stored or {}
    status = stored.get("status") or "not computed"
    if status != "ready":
        return {"status": status, "error": stored.get("error", ""), "tables": []}
    tiers = sorted(stored["thresholds"], key=stored["thresholds"].get, reverse=True)  # high first
    cols = columns(tiers)
    tables = []
    for report in stored["subgroups"]:
        result = report["result"]
        tables.append(
            {
                **{
                    k: report[k] for k in ("column", "label", "protected", "model_input", "declared", "bands")
                },
                "rows": [
                    _row("All patients", result["overall"], cols),
                    *(_row(g, result["groups"][g], cols) for g in report["group_order"]),
                ],
                "disparity": _disparity(result, tiers),
                "shap": _shap(result, report["group_order"]),
                "flags": [f["message"] for f in report["flags"]],
            }
        )
    return {
        "status": status,
        "error": "",
        "settings": stored["settings"],
        "computed_at": stored.get("computed_at"),
        "columns": cols,
        "tables": tables,
    }


def protected_characteristics(spec: dict, features: list[dict]) -> list[dict]:
    """Every subgroup bundle.yaml marks protected, saying whether the model uses it as an input
    (45 CFR 92.210 asks which inputs measure race, sex, age or disability)."""
    by_name = {f["name"]: f for f in features}
    out = []
    for s in spec.get("subgroups") or []:
        if not s.get("protected"):
            continue
        feature = by_name.get(s["column"])
        model_input = bool(feature and feature["decision_time"])
        out.append(
            {
                "column": s["column"],
                "label": s.get("label") or s["column"],
                "model_input": model_input,
                "feature_label": feature["label"] if feature else None,
                "source": feature["source"] if feature else None,
            }
        )
    return out
