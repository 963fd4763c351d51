"""The model card page, its chart data and its JSON API; the registry list."""

import html
import re

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from models_registry.services import model_register

CARD = "/api/v1/models/icu-mortality-30d/versions/1/card/"
PAGE = "/models/icu-mortality-30d/versions/1/"
# A number with more decimals than any figure of the card means: 0.7289, 0.00000006113023...
OVER_PRECISE = re.compile(r"\d\.\d{4,}")


def shown_text(page: str) -> str:
    """What a reader sees: the page without its scripts, styles and tags, entities decoded."""
    page = re.sub(r"<(script|style)\b.*?</\1>", " ", page, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


def test_card_json_values_equal_sklearn_on_the_fixture_bundle(model_version, demo_bundle_dir, alice_client):
    reference = pd.read_parquet(demo_bundle_dir / "reference.parquet")
    labels = reference["died_30d"].to_numpy()
    risk = reference["expected_risk"].to_numpy(dtype=np.float64)

    response = alice_client.get(CARD)

    assert response.status_code == 200
    card = response.json()
    model = card["performance"]["model"]
    assert model["auroc"]["value"] == round(roc_auc_score(labels, risk), 4)
    assert model["auprc"]["value"] == round(average_precision_score(labels, risk), 4)
    assert model["brier"]["value"] == round(brier_score_loss(labels, risk), 4)
    assert model["auroc"]["ci_low"] < model["auroc"]["value"] < model["auroc"]["ci_high"]
    high = card["tiers"]["high"]
    assert high["threshold"] == model_version.tier_high
    assert high["alerts_per_100"]["value"] == round(100 * (risk >= model_version.tier_high).mean(), 2)
    assert card["cohort"]["reference_size"] == 1147
    assert card["cohort"]["label_rate"] == round(labels.mean(), 4)
    assert card["cohort"]["units"]["MICU"] == round((reference["unit"] == "MICU").mean(), 4)
    assert (card["name"], card["version"], card["status"]) == ("icu-mortality-30d", 1, "production")
    assert card["outcome"] == "death within 30 days of ICU admission" and card["horizon_hours"] == 720
    assert card["known_failure_modes"].startswith("Trained on five US teaching hospitals")
    statuses = {c["name"]: c["status"] for c in card["checks"]}
    assert statuses == {
        "feature_names_match": "pass",
        "reproduces_expected_risk": "pass",
        "shap_additivity": "pass",
        "model_randomisation": "pass",
        "shap_engine": "pass",
        "background_documentation": "pass",
        "challenger": "pass",
    }
    # The demo bundle is explained by the fast engine, proven equal to shap on it, base included.
    engine = next(c["figures"] for c in card["checks"] if c["name"] == "shap_engine")
    assert engine["engine"] == "fast-exact" and engine["reason"] == ""
    assert engine["max_abs_value_diff"] <= 1e-6 and engine["base_diff"] <= 1e-6
    assert engine["reference_rows"] == 1147 and engine["reference_max_additivity_error"] <= 1e-4
    assert card["gate"]["passed"] is True
    assert card["promotions"][0]["overridden"] is False
    rhc = next(f for f in card["features"] if f["name"] == "rhc_day1")
    assert rhc["decision_time"] is False
    assert card["diff"] is None


def test_card_api_needs_a_login_and_answers_404_json(model_version, client, alice_client):
    assert client.get(CARD).status_code == 401  # no session: not authenticated (CONTRACT section 7)
    missing = alice_client.get("/api/v1/models/icu-mortality-30d/versions/9/card/")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"


def test_card_page_shows_every_section_to_any_role(model_version, alice_client, auditor_client, client):
    assert client.get(PAGE).status_code == 302  # to the login page

    for reader in (alice_client, auditor_client):
        response = reader.get(PAGE)
        assert response.status_code == 200
        body = response.content.decode()
        assert "Intended use" in body and "Decision support for ICU clinicians" in body
        assert "Creatinine" in body and "LOINC:2160-0" in body
        assert "documented, never an input (leakage)" in body
        assert "vendor/plotly/plotly.min.js" in body
        assert "Spearman ρ of mean |SHAP|" in body
        assert "Known failure modes" in body and "This is the first version." in body
        assert f"≥ {round(100 * model_version.tier_high)}%" in body  # a threshold reads as risks do
        # Times as a reader takes them in, not the JSON's ISO with microseconds.
        assert f"registered {model_version.registered_at:%Y-%m-%d %H:%M} UTC" in body
        assert model_version.registered_at.isoformat() not in body


def test_chart_data_is_what_the_figures_need(model_version, alice_client):
    response = alice_client.get("/models/icu-mortality-30d/versions/1/charts.json")

    assert response.status_code == 200
    data = response.json()
    model = next(s for s in data["reliability"] if s["name"] == "model")
    bins = [b for b in model_version.metrics["model"]["reliability"] if b["count"]]
    assert model["mean_predicted"] == [b["mean_predicted"] for b in bins]
    assert sum(model["count"]) == 1147
    assert {(m["metric"], m["who"]) for m in data["metrics"]} >= {("auroc", "model"), ("auroc", "challenger")}


def test_second_version_card_shows_the_diff(model_version, bad_bundle, alice_client):
    path = bad_bundle()
    spec = yaml.safe_load((path / "bundle.yaml").read_text())
    spec["tiers"]["high"] = 0.6
    spec["features"] = [f for f in spec["features"] if f["name"] != "rhc_day1"]
    next(f for f in spec["features"] if f["name"] == "sodium")["label"] = "Serum sodium"
    (path / "bundle.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    model_register(path=path)

    card = alice_client.get("/api/v1/models/icu-mortality-30d/versions/2/card/").json()

    diff = card["diff"]
    assert diff["previous_version"] == 1
    assert (diff["features_added"], diff["features_removed"]) == ([], ["rhc_day1"])
    assert diff["features_changed"] == [
        {"name": "sodium", "changes": {"label": {"previous": "Sodium", "current": "Serum sodium"}}}
    ]
    assert diff["metrics"]["auroc"]["delta"] == 0.0  # same model, same reference set
    before = model_version.metrics["model"]["alerts_per_100"]["high"]["value"]
    after = card["performance"]["model"]["alerts_per_100"]["high"]["value"]
    assert diff["metrics"]["alerts_per_100_high"] == {
        "previous": before,
        "current": after,
        "delta": round(after - before, 2),
    }
    assert after < before
    page = alice_client.get("/models/icu-mortality-30d/versions/2/").content.decode()
    assert "Removed: rhc_day1" in page


def test_registry_list_shows_each_version_and_status(model_version, alice_client):
    body = alice_client.get("/models/").content.decode()

    assert "icu-mortality-30d" in body
    assert 'href="/models/icu-mortality-30d/versions/1/"' in body
    assert "production" in body and "passed" in body


def test_chart_curves_equal_sklearn_and_are_cached_per_version(model_version, demo_bundle_dir, alice_client):
    from django.core.cache import cache
    from sklearn.metrics import precision_recall_curve, roc_curve

    from models_registry.services import artifact_store_path

    cache.clear()
    reference = pd.read_parquet(demo_bundle_dir / "reference.parquet")
    labels, risk = reference["died_30d"].to_numpy(), reference["expected_risk"].to_numpy(dtype=np.float64)
    fpr, tpr, _ = roc_curve(labels, risk)
    precision, recall, _ = precision_recall_curve(labels, risk, drop_intermediate=True)

    data = alice_client.get("/models/icu-mortality-30d/versions/1/charts.json").json()

    curves = {c["name"]: c for c in data["curves"]}
    assert set(curves) == {"model", "challenger"}
    np.testing.assert_allclose(curves["model"]["roc"]["fpr"], fpr, atol=1e-5)
    np.testing.assert_allclose(curves["model"]["roc"]["tpr"], tpr, atol=1e-5)
    np.testing.assert_allclose(curves["model"]["pr"]["precision"], precision, atol=1e-5)
    np.testing.assert_allclose(curves["model"]["pr"]["recall"], recall, atol=1e-5)
    # The trapezoidal area under the stored ROC points is the card's AUROC.
    assert np.trapezoid(curves["model"]["roc"]["tpr"], curves["model"]["roc"]["fpr"]) == pytest.approx(
        model_version.metrics["model"]["auroc"]["value"], abs=1e-4
    )
    challenger_auc = np.trapezoid(curves["challenger"]["roc"]["tpr"], curves["challenger"]["roc"]["fpr"])
    assert challenger_auc == pytest.approx(model_version.metrics["challenger"]["auroc"]["value"], abs=1e-4)

    # Cached: with the reference file gone from the store, the same charts are still served.
    reference_file = artifact_store_path(model_version.artifacts["reference.parquet"])
    reference_file.rename(reference_file.with_suffix(".moved"))
    assert alice_client.get("/models/icu-mortality-30d/versions/1/charts.json").json() == data

    # Uncached and the file missing: the stored figures with a message, never a 500.
    cache.clear()
    degraded = alice_client.get("/models/icu-mortality-30d/versions/1/charts.json")
    assert degraded.status_code == 200
    assert (
        degraded.json()["curves"] == [] and "missing from the model store" in degraded.json()["curves_error"]
    )
    assert degraded.json()["reliability"] == data["reliability"]


def test_card_page_rounds_every_figure_to_what_it_means(model_version, alice_client):
    card = alice_client.get(CARD).json()
    text = " ".join(shown_text(alice_client.get(PAGE).content.decode()).split())

    assert OVER_PRECISE.findall(text) == []
    checks = {c["name"]: c["figures"] for c in card["checks"]}
    reproduced = checks["reproduces_expected_risk"]
    # Tolerances and numerical differences: their order of magnitude, in scientific notation.
    assert f"largest difference {reproduced['max_abs_diff']:.1e} on 1147 rows (tolerance 1.0e-05)" in text
    assert f"largest error {checks['shap_additivity']['max_error']:.1e} log-odds" in text
    # Thresholds as percentages, as every risk is shown; alerts per 100 to one decimal.
    high = card["tiers"]["high"]
    alerts = high["alerts_per_100"]
    assert (
        f"high ≥ {round(100 * high['threshold'])}% "
        f"{alerts['value']:.1f} ({alerts['ci_low']:.1f}–{alerts['ci_high']:.1f})"
    ) in text
    # Metrics to the decimals of the Model Facts label, their intervals to the same decimals.
    model = card["performance"]["model"]
    auroc, brier = model["auroc"], model["brier"]
    assert f"{auroc['value']:.2f} ({auroc['ci_low']:.2f}–{auroc['ci_high']:.2f})" in text
    assert f"{brier['value']:.3f} ({brier['ci_low']:.3f}–{brier['ci_high']:.3f})" in text
    unit_gap = checks["background_documentation"]["unit"]["max_share_difference"]
    assert f"largest unit share difference {100 * unit_gap:.1f} percentage points" in text


def test_second_version_diff_is_rounded_and_signed(model_version, bad_bundle, alice_client):
    path = bad_bundle()
    spec = yaml.safe_load((path / "bundle.yaml").read_text())
    spec["tiers"]["high"] = 0.6
    (path / "bundle.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    model_register(path=path)
    card = alice_client.get("/api/v1/models/icu-mortality-30d/versions/2/card/").json()

    text = " ".join(
        shown_text(alice_client.get("/models/icu-mortality-30d/versions/2/").content.decode()).split()
    )

    assert OVER_PRECISE.findall(text) == []
    high = card["diff"]["metrics"]["alerts_per_100_high"]
    assert high["delta"] < 0  # a higher threshold: fewer alerts
    assert (
        f"alerts_per_100_high {high['previous']:.1f} {high['current']:.1f} −{abs(high['delta']):.1f}" in text
    )
    assert "high ≥ 60%" in text
