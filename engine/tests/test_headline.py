"""How a probability is printed: one rule for the headline, its range, its sentence and every list."""

import pytest

from engine.headline import Relation, reconcile, shown_percent_text


@pytest.mark.parametrize(
    "value, text",
    [(0.684, "68%"), (0.006, "1%"), (0.005, "<1%"), (0.004, "<1%"), (0.0, "0%"), (1.0, "100%")],
)
def test_a_risk_reads_below_one_percent_only_when_it_prints_as_zero(value, text):
    # 0.005 is half a percent: rounded half to even it prints as 0, so it reads "<1%", never "0%".
    assert shown_percent_text(value) == text


def test_a_score_printed_below_its_range_is_below_it_as_printed():
    shown = reconcile(0.004, 0.006, 0.02)
    assert (shown.risk, shown.low, shown.high, shown.relation) == (0, 1, 2, Relation.BELOW)
