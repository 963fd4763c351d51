"""How a risk relates to its calibrated interval: the one rule every headline uses.

The model's own score (the contract's `risk`) can fall outside the Venn-Abers interval fitted on the
reference set: the model then over- or under-estimates patients like this one. The comparison is
made on the figures as shown (whole percentages), so a headline never prints a risk outside its
printed interval without saying so, and never claims a gap the reader cannot see.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Relation(StrEnum):
    INSIDE = "inside"
    ABOVE = "above"  # the model over-estimates patients like this one
    BELOW = "below"  # the model under-estimates patients like this one


def shown_percent(value: float) -> int:
    """A probability as the page prints it: 0.684 -> 68."""
    return int(round(100 * float(value)))


def shown_percent_text(value: float) -> str:
    """The printed figure: 0.684 -> "68%"; a risk above zero that prints as 0 reads "<1%" (never a
    0% risk), and only such a risk: 0.006 prints "1%", as shown_percent rounds it."""
    shown = shown_percent(value)
    return "<1%" if shown == 0 and float(value) > 0 else f"{shown}%"


@dataclass(frozen=True)
class Reconciliation:
    relation: Relation
    risk: int  # percent, as shown
    low: int
    high: int


def reconcile(risk: float, low: float, high: float) -> Reconciliation:
    shown, lo, hi = shown_percent(risk), shown_percent(low), shown_percent(high)
    if shown > hi:
        relation = Relation.ABOVE
    elif shown < lo:
        relation = Relation.BELOW
    else:
        relation = Relation.INSIDE
    return Reconciliation(relation=relation, risk=shown, low=lo, high=hi)


def horizon_words(hours: int | None) -> str:
    """720 -> "within 30 days", 48 -> "within 48 hours", None -> ""."""
    if not hours:
        return ""
    if hours % 24 == 0 and hours >= 72:
        days = hours // 24
        return f"within {days} days"
    return f"within {hours} hour{'s' if hours != 1 else ''}"


def threshold_note(risk: float, *, high: float, medium: float) -> str:
    """Why a risk has its tier when, as printed, it equals a tier threshold: 57.96% shows as 58% like
    the high threshold 58% but is medium. "" when the printed figures already explain the tier."""
    shown = shown_percent(risk)
    for name, threshold in (("high", high), ("medium", medium)):
        if shown == shown_percent(threshold):
            above = risk >= threshold
            # As many decimals as it takes for the printed risk to sit on its side of the threshold.
            decimals = next(
                (d for d in (1, 2, 3) if above or round(100 * risk, d) < round(100 * threshold, d)), 4
            )
            where = "at or above" if above else "just below"
            return f"{where} the {name} threshold ({100 * threshold:g}%): {100 * risk:.{decimals}f}%"
    return ""
