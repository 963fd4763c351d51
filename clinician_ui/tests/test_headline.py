"""Every stored explanation, walked: the headline the page shows agrees with the figures stored,
and a risk printed outside its printed calibrated range always comes with the sentence saying so."""

import html
import re

import pytest
from django.urls import reverse

from engine.headline import Relation, reconcile
from explanations.models import Explanation
from patients.models import Alert

pytestmark = pytest.mark.django_db

RISK = re.compile(r'<span class="risk-value">(\d+|<1)%</span>')
INTERVAL = re.compile(r'id="risk-interval">calibrated range (\d+)%–(\d+)%</span>')
CORRECTION = re.compile(r'id="headline-correction">.*?</span> (.*?)</p>', re.S)


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


def _page(client, prediction) -> str:
    alert = Alert.objects.filter(prediction=prediction).first()
    url = (
        reverse("alert-detail", args=[alert.pk])
        if alert
        else reverse("prediction-detail", args=[prediction.pk])
    )
    response = client.get(url + ("" if alert else "?full=1"))
    assert response.status_code == 200
    return response.content.decode()


def test_every_headline_agrees_with_its_interval_or_says_why(charlie_client, explained):
    outside = 0
    for explanation in explained:
        prediction = explanation.prediction
        page = _page(charlie_client, prediction)
        if explanation.abstain:
            # The number is never the headline of an abstention, and no correction competes with it.
            assert not RISK.search(page) and "headline-correction" not in page
            continue
        shown_risk = int(RISK.search(page).group(1))
        low, high = (int(v) for v in INTERVAL.search(page).groups())
        stored = explanation.uncertainty["interval"]
        expected = reconcile(prediction.risk, stored["low"], stored["high"])
        # The printed figures are the stored ones, rounded once.
        assert (shown_risk, low, high) == (expected.risk, expected.low, expected.high)
        correction = CORRECTION.search(page)
        printed_outside = not low <= shown_risk <= high
        assert printed_outside == (correction is not None), (prediction.pk, shown_risk, low, high)
        if correction:
            outside += 1
            text = html.unescape(correction.group(1))
            assert f"({low}%–{high}%)" in text and f"({shown_risk}%)" in text
            word = "over-estimates" if expected.relation == Relation.ABOVE else "under-estimates"
            assert word in text
        # The figures' relation is explained wherever similar patients are shown beside them.
        if explanation.similar_patients:
            assert 'id="figures-relate"' in page
    # The demo model's scores do fall outside their calibrated range: the walk is not vacuous.
    assert outside > 0


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
        page = html.unescape(_page(charlie_client, prediction))
        if not explanation.quality_flags:
            assert 'id="quality-flags"' not in page and 'class="quality-flag"' not in page
            continue
        flagged += 1
        notice = page[
            page.index('id="quality-flags"') : page.index("</div>", page.index('id="quality-flags"'))
        ]
        for flag in explanation.quality_flags:
            assert flag["text"] in notice and flag["label"] in notice
            assert (
                f'<span class="quality-flag"><span aria-hidden="true">⚠</span> {flag["text"]}</span>' in page
            )
        # A zero heart rate, MAP or respiratory rate is never an ordinary observation.
        for name in ("heart_rate", "map", "resp_rate"):
            if (prediction.features.get(name) or {}).get("value") == 0:
                assert any(f["feature"] == name and f["kind"] == "zero" for f in explanation.quality_flags)
    assert flagged > 0  # the demo cohort has recorded zeros: the walk is not vacuous
