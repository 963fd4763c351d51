"""How the model card, the Model Facts label and its PDF print a figure: rounded to what it means.

The card's JSON keeps the stored figures as computed; the pages print them as a reader takes them
in: metrics to the decimals their intervals justify (those of the subgroup table), tolerances and
numerical differences in scientific notation, risk thresholds and shares as percentages.
"""

from __future__ import annotations

from models_registry.card_subgroups import METRICS, UNDEFINED, figure_text

METRIC_DECIMALS = {key: decimals for key, _, decimals in METRICS}
ALERTS_PER_100_DECIMALS = 1
DEFAULT_DECIMALS = 3


def decimals_for(metric: str) -> int:
    """auroc -> 2, brier -> 3, alerts_per_100_high -> 1; any other figure -> 3."""
    if str(metric).startswith("alerts_per_100"):
        return ALERTS_PER_100_DECIMALS
    return METRIC_DECIMALS.get(str(metric).lower(), DEFAULT_DECIMALS)


def fixed(value, decimals: int = DEFAULT_DECIMALS) -> str:
    """A number to `decimals` places: 0.69412 -> "0.694"."""
    if value is None or value == "":
        return UNDEFINED
    return f"{float(value):.{int(decimals)}f}"


def metric_text(figure, name: str) -> str:
    """A metric ({"value", "ci_low", "ci_high"} or a bare number) rounded for `name`, with its
    interval to the same decimals: "0.73 (0.70–0.76)"."""
    if isinstance(figure, dict):
        return figure_text(figure, decimals_for(name))
    return fixed(figure, decimals_for(name))


def signed_metric_text(value, name: str) -> str:
    """A change of a metric, signed: "+0.01", "−0.3", "0.00" for none."""
    if value is None:
        return UNDEFINED
    text = fixed(abs(value), decimals_for(name))
    if float(text) == 0:
        return text
    return f"+{text}" if value > 0 else f"−{text}"


def sci(value) -> str:
    """A tolerance or a numerical difference, whose size is its order of magnitude: "6.1e-08"."""
    if value is None or value == "":
        return UNDEFINED
    return f"{float(value):.1e}"


def percent(value) -> str:
    """A risk threshold or a share as a percentage, as risks are shown everywhere: 0.52 -> "52%",
    0.525 -> "52.5%" (a decimal only where the threshold has one)."""
    if value is None or value == "":
        return UNDEFINED
    shown = round(100 * float(value), 1)
    return f"{shown:.0f}%" if shown == int(shown) else f"{shown:.1f}%"


def points(value) -> str:
    """A difference of two shares in percentage points: 0.0114 -> "1.1 percentage points"."""
    if value is None or value == "":
        return UNDEFINED
    return f"{100 * float(value):.1f} percentage points"
