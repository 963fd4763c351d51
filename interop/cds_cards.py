"""The CDS Hooks 2.0 card for a score: what the alert page shows, said in the EHR.

Every number comes from the same reads the alert page uses (clinician_ui.selectors.score_detail_get
and its headline, engine.headline via clinician_ui.explanation_parts) and is printed with the page's
own filter, so the card and the page cannot disagree: the risk, its calibrated range, the outcome in
words, the factors with their values, units, observed times and source systems, and the calibration
sentence.
"""

from __future__ import annotations

import uuid
from urllib.parse import quote

from django.conf import settings

from clinician_ui.selectors import ScoreDetail, model_card_path
from clinician_ui.templatetags.sightline import percent
from common.timestamps import iso_utc
from engine.tiers import Tier
from patients.actions import action_reasons

SUMMARY_MAX = 139  # CDS Hooks 2.0: "<140 characters"
INDICATOR = {Tier.HIGH.value: "critical", Tier.MEDIUM.value: "warning", Tier.LOW.value: "info"}
OVERRIDE_SYSTEM_PATH = "/cds-services/override-reasons"
CARD_NAMESPACE = uuid.UUID("5b0f7c1e-8d1b-4c55-9a57-3c0f5e3d2a61")


def card_uuid(*, service_id: str, ehr_iss: str, alert_id: int | None, prediction_id: int) -> uuid.UUID:
    """Stable per (EHR, alert, card): the same alert always answers the same card uuid to one EHR,
    and each EHR its own, so each EHR's feedback finds the card it was shown."""
    subject = f"alert:{alert_id}" if alert_id is not None else f"prediction:{prediction_id}"
    return uuid.uuid5(CARD_NAMESPACE, f"{ehr_iss}|{service_id}/{subject}/risk-card")


def override_reason_system(base: str) -> str:
    return base + OVERRIDE_SYSTEM_PATH


def override_reasons(base: str) -> list[dict]:
    """The configured dismiss reasons (settings.ALERT_ACTION_REASONS), as Codings."""
    system = override_reason_system(base)
    return [{"code": r["code"], "system": system, "display": r["label"]} for r in action_reasons()["dismiss"]]


def _fit(text: str, limit: int = SUMMARY_MAX) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def card_summary(detail: ScoreDetail) -> str:
    """Tier, risk and its calibrated range, the outcome in words; an abstention says so instead."""
    prediction = detail.prediction
    tier = prediction.tier.capitalize()
    risk = percent(prediction.risk)
    headline = detail.headline
    meaning = headline.meaning if headline else f"risk of {prediction.model_version.registered_model.outcome}"
    if detail.abstain:
        return _fit(f"Model abstains ({tier} tier score {risk} not reliable for this patient): {meaning}")
    interval = f" ({headline.interval_text})" if headline and headline.interval_text else ""
    text = f"{tier} risk {risk}{interval}: {meaning}"
    if len(text) > SUMMARY_MAX and interval:
        # The outcome is shortened, never the numbers.
        head = f"{tier} risk {risk}{interval}: "
        text = head + _fit(meaning, SUMMARY_MAX - len(head))
    return _fit(text)


def _factor_line(row) -> str:
    value = f"{row.value_text} {row.unit}".strip() if row.measured else "not measured"
    when = f", observed {iso_utc(row.observed_at)}" if row.observed_at else ""
    source = f", source {row.source_system}" if row.source_system else ""
    direction = "raises risk" if (row.shap or 0) >= 0 else "lowers risk"
    return f"- **{row.label}**: {value}{when}{source} ({direction})"


def _quality_flags(detail: ScoreDetail) -> list[str]:
    flags = []
    if detail.abstain:
        flags.append(f"The model abstains: {detail.abstain_reason or 'its output is not reliable here'}.")
    uncertainty = detail.uncertainty
    if uncertainty is not None and uncertainty.out_of_distribution:
        flags.append("Unusual patient: " + (uncertainty.ood_note or "far from the reference patients."))
    if uncertainty is not None and uncertainty.not_measured:
        flags.append("Key inputs not measured: " + ", ".join(uncertainty.not_measured) + ".")
    # Values read as impossible or as recording artefacts, as the alert page flags them (engine.quality).
    flags += [f"Check the source: {flag['label']} {flag['text']}." for flag in detail.quality_flags]
    not_measured = [r.label for r in detail.rows if not r.measured]
    if not_measured and (uncertainty is None or not uncertainty.not_measured):
        flags.append("Not measured (never imputed): " + ", ".join(not_measured) + ".")
    if detail.stability is not None and not detail.stability.stable:
        flags.append(detail.stability.label + ": " + detail.stability.sentence)
    if detail.simulated:
        flags.append("Simulated demo data.")
    return flags


def card_detail(detail: ScoreDetail) -> str:
    """Markdown: the top factors, data-quality flags and the calibration sentence."""
    lines: list[str] = []
    if detail.headline and detail.headline.correction and not detail.abstain:
        lines += [detail.headline.correction, ""]
    if detail.ready:
        ranked = [r for r in detail.rows if r.shap is not None][: settings.CDS_CARD_TOP_FACTORS]
        lines.append("**Largest factors** (SHAP, largest first):")
        lines += [_factor_line(r) for r in ranked]
    else:
        lines.append(f"The explanation is {detail.status}; open Sightline for the factors.")
    flags = _quality_flags(detail)
    if flags:
        lines += ["", "**Data quality:**", *[f"- {flag}" for flag in flags]]
    if detail.uncertainty is not None:
        lines += ["", "**Calibration:** " + detail.uncertainty.calibration_note]
    version = detail.prediction.model_version
    lines += [
        "",
        f"Scored {iso_utc(detail.prediction.scored_at)} by "
        f"{version.registered_model.name} v{version.version}.",
    ]
    return "\n".join(lines)


def risk_card(detail: ScoreDetail, *, card_id: uuid.UUID, base: str) -> dict:
    """One CDS Hooks 2.0 card (uuid, summary, indicator, source, detail, links, overrideReasons)."""
    prediction = detail.prediction
    version = prediction.model_version
    alert = detail.alert
    name = version.registered_model.name
    return {
        "uuid": str(card_id),
        "summary": card_summary(detail),
        "indicator": INDICATOR.get(prediction.tier, "info"),
        "detail": card_detail(detail),
        "source": {
            "label": f"Sightline · {name} v{version.version}",
            "url": base + model_card_path(version),
            "topic": {"system": base + "/cds-services", "code": quote(name, safe=""), "display": name},
        },
        "links": [
            {
                "label": "Open the explained alert in Sightline" if alert else "Open the score in Sightline",
                "url": base + "/smart/launch",
                "type": "smart",
            }
        ],
        "overrideReasons": override_reasons(base),
    }
