"""A risk read against its baseline and its tier threshold, on the worklist and the alert page."""

from django.urls import reverse

from clinician_ui.selectors import worklist_get
from tests.fixtures.factories import prediction_create


def _with_reference(version, *, units: dict[str, tuple[int, int]], label_rate=0.28, size=1000):
    """Store the registry's figures the baselines come from: the reference set's label rate and,
    per unit, (patients, events) as the subgroup worker stores them."""
    version.metrics = {**(version.metrics or {}), "model": {"label_rate": label_rate, "events": 280}}
    version.reference_size = size
    groups = {unit: {"too_few": n < 30, "n": n, "events": events} for unit, (n, events) in units.items()}
    version.subgroups = {"status": "ready", "subgroups": [{"column": "unit", "result": {"groups": groups}}]}
    version.save(update_fields=["metrics", "reference_size", "subgroups"])
    return version


def test_each_row_shows_its_units_reference_rate_or_the_whole_sets(
    charlie, charlie_client, alice_client, ui_model_version
):
    version = _with_reference(ui_model_version, units={"MICU": (790, 253), "SICU": (12, 3)})
    micu = prediction_create(model_version=version, unit="MICU", risk=0.71)
    sicu = prediction_create(model_version=version, unit="SICU", risk=0.40)
    low = prediction_create(model_version=version, unit="MICU", risk=0.12)

    data = worklist_get(user=charlie)  # an admin: every unit
    by_id = {row.prediction_id: row for row in data.alerts}
    assert (by_id[micu.pk].baseline.unit, round(by_id[micu.pk].baseline.rate, 4)) == ("MICU", 0.3203)
    # 12 SICU reference patients are too few for a rate of their own: the whole set's is shown.
    assert (by_id[sicu.pk].baseline.unit, by_id[sicu.pk].baseline.rate) == (None, 0.28)
    assert data.low[0].baseline.unit == "MICU"

    html = alice_client.get(reverse("worklist")).content.decode()
    assert 'title="32% of 790 MICU reference patients had the outcome.">MICU rate 32%</span>' in html
    html = charlie_client.get(reverse("worklist")).content.decode()
    assert 'title="28% of 1,000 reference patients had the outcome.">reference rate 28%</span>' in html
    page = alice_client.get(reverse("alert-detail", args=[micu.alert.pk])).content.decode()
    assert "Baseline: 32% of 790 MICU reference patients had the outcome." in page
    low_page = alice_client.get(reverse("prediction-detail", args=[low.pk])).content.decode()
    assert "Baseline: 32% of 790 MICU reference patients had the outcome." in low_page


def test_a_risk_printed_like_its_threshold_says_which_side_it_is_on(alice, alice_client, ui_model_version):
    """Thresholds 50% (high) and 25% (medium): 49.6% prints as 50% yet is medium; 50.2% is high."""
    below = prediction_create(model_version=ui_model_version, risk=0.496)
    above = prediction_create(model_version=ui_model_version, risk=0.502)
    clear = prediction_create(model_version=ui_model_version, risk=0.71)
    rows = {row.prediction_id: row for row in worklist_get(user=alice).alerts}
    assert (below.tier, above.tier) == ("medium", "high")
    assert rows[below.pk].threshold_note == "just below the high threshold (50%): 49.6%"
    assert rows[above.pk].threshold_note == "at or above the high threshold (50%): 50.2%"
    assert rows[clear.pk].threshold_note == ""

    html = alice_client.get(reverse("worklist")).content.decode()
    assert '<span class="threshold-note">just below the high threshold (50%): 49.6%</span>' in html
    page = alice_client.get(reverse("alert-detail", args=[below.alert.pk])).content.decode()
    assert "Medium tier: just below the high threshold (50%): 49.6%" in page
    assert (
        'id="risk-threshold"'
        not in alice_client.get(reverse("alert-detail", args=[clear.alert.pk])).content.decode()
    )
