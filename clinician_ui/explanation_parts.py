"""What the alert page says about the explanation engine's results: the uncertainty interval and
calibration note, the stability badge and the similar reference patients, worded for a clinician.

Plain functions over the JSON an Explanation stores (engine.profile and engine.stability
write it); no queries. Every sentence says where its numbers come from: the model's held-out
reference set, not this hospital's patients.
"""

from dataclasses import dataclass, field

from engine.headline import Relation, horizon_words, reconcile, shown_percent_text


def pct(value: float | None) -> str:
    """0.684 -> "68%", 0.004 -> "<1%"; None -> "–" (engine.headline.shown_percent_text)."""
    return "–" if value is None else shown_percent_text(value)


@dataclass
class UncertaintyPart:
    interval_low: float
    interval_high: float
    method: str
    calibration_note: str
    calibration_n: int
    conformal_note: str
    out_of_distribution: bool
    ood_note: str
    not_measured: list[str] = field(default_factory=list)  # labels of key inputs not measured


@dataclass
class StabilityPart:
    stable: bool
    agreement: int  # percent
    threshold: int  # percent
    top_k: int
    perturbations: int
    changed: list[tuple[str, int]]  # (label, how many recomputations moved it in/out of the top k)

    @property
    def label(self) -> str:
        return "Stable explanation" if self.stable else "Unstable explanation"

    @property
    def shape(self) -> str:
        # Shape and text carry the state, never colour alone.
        return "●" if self.stable else "▲"

    @property
    def sentence(self) -> str:
        return (
            f"The {self.top_k} largest factors stayed the same in {self.agreement}% (average overlap) of "
            f"{self.perturbations} recomputations with measurement-sized noise on the inputs"
            + ("." if self.stable else f", below the {self.threshold}% this badge needs.")
        )


@dataclass
class NeighbourRow:
    outcome: bool
    risk: float
    unit: str
    shared: list[dict]  # {"label", "direction"}


@dataclass
class SimilarPart:
    summary: str
    k: int
    events: int
    rows: list[NeighbourRow]


def uncertainty_part(
    uncertainty: dict | None, *, outcome: str, labels: dict[str, str]
) -> UncertaintyPart | None:
    if not uncertainty:
        return None
    interval = uncertainty.get("interval") or {}
    calibration = uncertainty.get("calibration") or {}
    rate = calibration.get("observed_rate")
    n = int(calibration.get("n") or 0)
    low, high = (calibration.get("bin") or [None, None])[:2]
    if rate is not None and n and low is not None:
        ci = calibration.get("ci") or [None, None]
        level = calibration.get("ci_level") or 0.95
        note = (
            f"Of the {n} reference-set patients the model scored between {pct(low)} and {pct(high)}, "
            f"{pct(rate)} ({pct(ci[0])}–{pct(ci[1])}, {pct(level)} confidence interval) had the outcome: "
            f"{outcome}."
        )
    else:
        note = (
            "No reference-set patient was scored in this range, so there is no observed rate to compare with."
        )
    conformal = uncertainty.get("conformal") or {}
    outcome_set = conformal.get("outcome_set") or []
    if conformal:
        sets = {
            ("event",): "predicts the outcome",
            ("no event",): "predicts no outcome",
        }
        said = sets.get(tuple(outcome_set), "cannot tell the outcome apart from no outcome")
        if not outcome_set:
            said = "fits neither outcome well (an unusual patient)"
        conformal_note = (
            f"At {pct(conformal.get('level'))} confidence the model {said} for this patient "
            f"(coverage measured on held-out reference patients: {pct(conformal.get('coverage_measured'))})."
        )
    else:
        conformal_note = ""
    ood = uncertainty.get("ood") or {}
    flag = bool(ood.get("flag"))
    percentile = ood.get("reference_percentile")
    if flag and "distance" in ood and ood["distance"] is None:
        ood_note = "This patient shares too few measured inputs with the reference patients to be compared."
    elif percentile is not None:
        ood_note = (
            f"This patient's inputs are further from the reference patients than {percentile:.0f}% of "
            "reference patients are from each other."
        )
    else:
        ood_note = ""
    missing = (uncertainty.get("key_features") or {}).get("not_measured") or []
    return UncertaintyPart(
        interval_low=float(interval.get("low", 0.0)),
        interval_high=float(interval.get("high", 0.0)),
        method=interval.get("method") or "",
        calibration_note=note,
        calibration_n=n,
        conformal_note=conformal_note,
        out_of_distribution=flag,
        ood_note=ood_note,
        not_measured=[labels.get(name, name) for name in missing],
    )


def stability_part(stability: dict | None, *, labels: dict[str, str]) -> StabilityPart | None:
    if not stability:
        return None
    changed = stability.get("changed_features") or {}
    return StabilityPart(
        stable=not stability.get("unstable"),
        agreement=round(100 * float(stability.get("agreement", 1.0))),
        threshold=round(100 * float(stability.get("threshold", 0.0))),
        top_k=int(stability.get("top_k") or 0),
        perturbations=int(stability.get("perturbations") or 0),
        changed=[(labels.get(name, name), int(count)) for name, count in list(changed.items())[:5]],
    )


def similar_part(similar: dict | None, *, labels: dict[str, str]) -> SimilarPart | None:
    if not similar:
        return None
    rows = [
        NeighbourRow(
            outcome=bool(n.get("outcome")),
            risk=float(n.get("risk", 0.0)),
            unit=str(n.get("unit") or ""),
            shared=[
                {"label": labels.get(f["name"], f["name"]), "direction": f.get("direction", "")}
                for f in n.get("shared_features") or []
            ],
        )
        for n in similar.get("neighbours") or []
    ]
    return SimilarPart(
        summary=similar.get("summary") or "",
        k=int(similar.get("k") or len(rows)),
        events=int(similar.get("events") or 0),
        rows=rows,
    )


@dataclass
class HeadlinePart:
    """One honest headline: the risk, what it is a risk of, its calibrated interval and, when the
    score lies outside that interval, the sentence that says so with the calibrated figures."""

    risk_text: str
    meaning: str  # "risk of death within 30 days"
    interval_text: str  # "calibrated range 54%–55%" ("" when there is no interval yet)
    relation: str  # engine.headline.Relation
    correction: str  # "" when the risk lies inside its interval
    relates: str  # how the interval, the calibration note and the similar patients relate


def headline_part(
    *,
    risk: float,
    outcome: str,
    horizon_hours: int | None,
    uncertainty: UncertaintyPart | None,
    similar: SimilarPart | None,
) -> HeadlinePart:
    # The horizon is added unless the outcome's own words already give it ("... within 30 days").
    horizon = "" if "within" in outcome.lower() else horizon_words(horizon_hours)
    meaning = " ".join(part for part in (f"risk of {outcome}", horizon) if part)
    if uncertainty is None:
        return HeadlinePart(pct(risk), meaning, "", Relation.INSIDE, "", "")
    shown = reconcile(risk, uncertainty.interval_low, uncertainty.interval_high)
    # Every figure as printed (engine.headline.shown_percent_text), as reconcile compared them.
    score, low, high = pct(risk), pct(uncertainty.interval_low), pct(uncertainty.interval_high)
    interval_text = f"calibrated range {low}–{high}"
    correction = ""
    if shown.relation == Relation.ABOVE:
        correction = (
            f"The model's score ({score}) is above its calibrated range: on the reference set, "
            f"patients it scored like this one had the outcome less often ({low}–{high}). "
            "The model over-estimates patients like this one."
        )
    elif shown.relation == Relation.BELOW:
        correction = (
            f"The model's score ({score}) is below its calibrated range: on the reference set, "
            f"patients it scored like this one had the outcome more often ({low}–{high}). "
            "The model under-estimates patients like this one."
        )
    relates = (
        "How these figures relate: the calibrated range is fitted on every patient of the model's "
        "reference set; the observed rate counts only the reference patients scored in the same "
        "band as this one"
    )
    if similar is not None and similar.k:
        relates += (
            f"; the similar patients are the {similar.k} reference patients whose explanations are "
            f"nearest this one's ({similar.events} of {similar.k} had the outcome), a small group whose "
            "rate can differ widely from either"
        )
    return HeadlinePart(score, meaning, interval_text, shown.relation, correction, relates + ".")
