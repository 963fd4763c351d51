"""Every stored explanation, walked: the headline the page shows agrees with the figures stored,
and a risk printed outside its printed calibrated range always comes with the sentence saying so.

The page is read back with tests/fixtures/shown.py, which the census walk
(clinician_ui/tests/test_census_walk.py) shares."""

import pytest
from django.urls import reverse

from clinician_ui.explanation_parts import UncertaintyPart, headline_part
from clinician_ui.templatetags.sightline import percent
from explanations.models import Explanation
from tests.fixtures.shown import cue_check, headline_check, quality_flags_check, score_page

pytestmark = pytest.mark.django_db


@pytest.fixture
def explained(service_client, prediction_payload, django_capture_on_commit_callbacks):
    """The demo model's 60 payloads posted and explained (tasks run in-process)."""
    for i in range(prediction_payload.count):
        with django_capture_on_commit_callbacks(execute=True):
            response = service_client.post("/api/v1/predictions/", prediction_payload(i), format="json")
        assert response.status_code == 201, response.content
    ready = list(
        Explanation.objects.filter(status=Explanation.Status.READY).select_related(
            "prediction__model_version__registered_model"
        )
    )
    assert len(ready) == prediction_payload.count
    return ready


def test_every_headline_agrees_with_its_interval_or_says_why(charlie_client, explained):
    outside = 0
    for explanation in explained:
        page = score_page(charlie_client, explanation.prediction)
        outside += headline_check(page, explanation)
        # The figures' relation is explained wherever similar patients are shown beside them.
        if explanation.similar_patients and not explanation.abstain:
            assert 'id="figures-relate"' in page
    # The demo model's scores do fall outside their calibrated range: the walk is not vacuous.
    assert outside > 0


def test_every_low_tier_cue_says_when_its_calibrated_range_disagrees(charlie_client, explained):
    """The short view a low-tier score opens on carries the correction the full view gives: a score
    printed below its calibrated range (the model under-estimates patients like this one) says so
    before anyone asks for the full explanation."""
    walked = corrected = 0
    for explanation in explained:
        prediction = explanation.prediction
        if hasattr(prediction, "alert"):
            continue  # an alert opens on the full page (test above)
        page = charlie_client.get(reverse("prediction-detail", args=[prediction.pk])).content.decode()
        assert 'id="cue-title"' in page, prediction.pk
        walked += 1
        corrected += cue_check(page, explanation)
    assert walked > 0 and corrected > 0  # the demo's low scores do fall outside: not vacuous


def test_every_value_read_as_an_artefact_is_flagged_on_its_page(charlie_client, explained):
    """Walk every stored explanation: the flags stored are engine.quality's on the posted values, and
    each is on the page beside the value and in the notice above the explanation; a page without a
    flagged value shows no notice."""
    from engine.quality import quality_flags

    flagged = 0
    for explanation in explained:
        prediction = explanation.prediction
        specs = prediction.model_version.quality_specs()
        assert explanation.quality_flags == quality_flags(prediction.features, specs)
        flagged += bool(quality_flags_check(score_page(charlie_client, prediction), explanation))
        # A zero heart rate, MAP or respiratory rate is never an ordinary observation.
        for name in ("heart_rate", "map", "resp_rate"):
            if (prediction.features.get(name) or {}).get("value") == 0:
                assert any(f["feature"] == name and f["kind"] == "zero" for f in explanation.quality_flags)
    assert flagged > 0  # the demo cohort has recorded zeros: the walk is not vacuous


def test_a_score_below_one_percent_reads_the_same_in_the_headline_its_sentence_and_lists():
    """0.4% prints "<1%" in the headline (the `percent` filter, which lists and cards use too) and in
    the sentence that says it lies below its calibrated range, never "0%" beside "<1%"."""
    uncertainty = UncertaintyPart(
        interval_low=0.006,
        interval_high=0.02,
        method="venn_abers",
        calibration_note="",
        calibration_n=0,
        conformal_note="",
        out_of_distribution=False,
        ood_note="",
    )
    part = headline_part(
        risk=0.004, outcome="death", horizon_hours=720, uncertainty=uncertainty, similar=None
    )
    assert percent(0.004) == part.risk_text == "<1%"
    assert part.interval_text == "calibrated range 1%–2%"
    assert "The model's score (<1%) is below its calibrated range" in part.correction
    assert "(1%–2%)" in part.correction


def test_a_binary_input_reads_what_its_zero_and_one_stand_for(charlie_client, explained, model_version):
    """Browser walk finding: "Sex: female — no" made a clinician work out "male". Where bundle.yaml
    says what a binary column's 0 and 1 stand for (a subgroup's `values`), the page says it too."""
    labels = model_version.binary_value_labels()
    assert labels["sex_female"] == {0: "male", 1: "female"}
    seen = set()
    for explanation in explained:
        prediction = explanation.prediction
        value = (prediction.features.get("sex_female") or {}).get("value")
        if value is None:
            continue
        said = "yes (female)" if value in (1, True) else "no (male)"
        page = score_page(charlie_client, prediction)
        cell = page.split('<th scope="row">Sex: female</th>', 1)[1].split("</tr>", 1)[0]
        assert said in cell, (prediction.pk, value, cell[:200])
        seen.add(said)
    assert seen == {"yes (female)", "no (male)"}  # both read, not vacuous
