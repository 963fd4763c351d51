"""The alert page's bedside summary: the three main factors in plain words, in percentage points, with
value, unit, time and source, before the chart; SHAP's terms only in "About this explanation"."""

import re

from django.urls import reverse

from clinician_ui.selectors import explanation_figure, score_detail_get
from tests.fixtures.factories import prediction_create


def _section(html: str, element_id: str) -> str:
    start = html.index(f'id="{element_id}"')
    return html[start : html.index("</section>", start)]


def test_main_factors_come_first_in_the_clinicians_terms(alice_client, ui_model_version):
    prediction = prediction_create(model_version=ui_model_version, risk=0.71)
    html = alice_client.get(reverse("alert-detail", args=[prediction.alert.pk])).content.decode()
    detail = score_detail_get(prediction=prediction, alert=prediction.alert)

    summary = _section(html, "bedside-summary")
    # Before the actions and the chart (the tab order too), and no template comment leaks as text.
    assert html.index('id="bedside-summary"') < html.index('id="action-form"') < html.index('id="why-title"')
    assert "{#" not in html and "#}" not in html
    items = re.findall(r"<li>(.*?)</li>", summary, re.S)
    assert len(items) == 3
    for row, item in zip(detail.top_factors, items, strict=True):
        text = " ".join(re.sub(r"<[^>]+>", " ", item).split())
        assert text.startswith(row.label)
        assert row.value_text in text and (not row.unit or row.unit in text)
        words = "raises the risk" if row.shap >= 0 else "lowers the risk"
        points = f"{100 * row.probability_points:+.1f}".replace("-", "\u2212")
        assert f"{words} by about {points} percentage points" in text
        if row.observed_at:
            assert f"observed {row.observed_at:%Y-%m-%d %H:%M} UTC ({row.age_text})" in text
        if row.source_system:
            assert row.source_system in text
    # The three are the largest contributions, largest first.
    ranked = sorted((r for r in detail.rows if r.shap is not None), key=lambda r: -abs(r.shap))
    assert [r.name for r in detail.top_factors] == [r.name for r in ranked[:3]]
    # Log-odds and the background are explained in their own section, not in the summary or chart note.
    assert "log-odds" not in summary and "log-odds" not in _section(html, "why-title").split("<button")[0]
    about = _section(html, "about-explanation")
    assert "log-odds" in about and f"base value {detail.base_value:.2f} log-odds" in about


def test_the_charts_points_add_up_to_the_risk_from_the_background_average(alice_client, ui_model_version):
    """What the chart draws by default: from the background's average risk, each factor's points, to
    the risk printed in the headline."""
    prediction = prediction_create(model_version=ui_model_version, risk=0.71)
    figure = explanation_figure(score_detail_get(prediction=prediction, alert=prediction.alert))
    points = sum(step["probability_points"] for step in figure["contributions"])
    assert abs(figure["base_probability"] + points - prediction.risk) < 1e-9
    assert (
        abs(figure["base_value"] + sum(s["shap"] for s in figure["contributions"]) - figure["output"]) < 1e-12
    )
