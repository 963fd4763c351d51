"""Subgroups at registration (issue #18): bundle.yaml `subgroups` validated, the per-subgroup figures
computed on the reference set and stored with the version, the disparity check, the "Protected
characteristics" section and "too few to judge" on the model card."""

import numpy as np
import pandas as pd
import pytest
import yaml
from fairlearn.metrics import MetricFrame, equalized_odds_difference
from sklearn.metrics import brier_score_loss, recall_score, roc_auc_score

from models_registry.bundle import BundleError
from models_registry.card_subgroups import subgroup_tables
from models_registry.models import ModelVersion, RegisteredModel
from models_registry.services import model_register
from models_registry.subgroups import version_subgroups_compute, versions_subgroups_due

PAGE = "/models/icu-mortality-30d/versions/1/"
CARD = "/api/v1/models/icu-mortality-30d/versions/1/card/"


def _edit_spec(path, change):
    spec = yaml.safe_load((path / "bundle.yaml").read_text())
    change(spec)
    (path / "bundle.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))


def _subgroup(spec, column):
    return next(s for s in spec["subgroups"] if s["column"] == column)


@pytest.fixture
def computed(model_version, settings):
    settings.SUBGROUP_BOOTSTRAP_RESAMPLES = 20
    assert model_version.subgroups == {"status": "pending"}
    assert version_subgroups_compute(version_id=model_version.pk) == "ready"
    model_version.refresh_from_db()
    return model_version


BAD = [
    (lambda s: s.update(subgroups={"column": "race"}), "bundle.yaml subgroups must be a list"),
    (lambda s: s["subgroups"].append({"column": "race", "colour": "x"}), "unknown key 'colour'"),
    (lambda s: s["subgroups"].append({"column": "unit"}), "subgroup 'unit': unit and shift are always"),
    (lambda s: s["subgroups"].append({"column": "race"}), "subgroup 'race' is declared twice"),
    (lambda s: s["subgroups"].append({"column": "religion"}), "subgroup 'religion' names a column that"),
    (lambda s: _subgroup(s, "age").update(bands=[45, 18]), "subgroup 'age' bands must be increasing"),
    (lambda s: _subgroup(s, "race").update(bands=[1, 2]), "subgroup 'race' has bands, but reference"),
    (lambda s: _subgroup(s, "sex_female").update(bands=[1]), "feature 'sex_female' is not numeric"),
    (lambda s: _subgroup(s, "race").update(protected="yes"), "subgroup 'race' protected must be true or"),
    (lambda s: _subgroup(s, "sex_female").update(values=[0, 1]), "subgroup 'sex_female' values must map"),
    (lambda s: s.update(source_attributes={"colour": "x"}), "source_attributes has an unknown key 'colour'"),
    (
        lambda s: s.update(source_attributes={"validity_test_data": "great"}),
        "source_attributes.validity_test_data is computed by the registry",
    ),
    (lambda s: s.update(warnings=[3]), "bundle.yaml warnings must be text or a list of text"),
]


@pytest.mark.parametrize(("change", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_subgroups_are_rejected_naming_the_field_and_store_nothing(
    db, model_store, bad_bundle, change, message
):
    path = bad_bundle()
    _edit_spec(path, change)

    with pytest.raises(BundleError) as error:
        model_register(path=path)

    assert message in str(error.value)
    assert RegisteredModel.objects.count() == 0 and ModelVersion.objects.count() == 0


def test_figures_equal_fairlearn_and_sklearn_on_the_same_rows(computed, demo_bundle_dir):
    reference = pd.read_parquet(demo_bundle_dir / "reference.parquet")
    y, risk = reference["died_30d"].to_numpy(), reference["expected_risk"].to_numpy(dtype=np.float64)
    reports = {r["column"]: r for r in computed.subgroups["subgroups"]}
    assert list(reports) == ["unit", "shift", "sex_female", "age", "race"]  # unit and shift always
    assert (reports["race"]["protected"], reports["race"]["model_input"]) == (True, False)
    assert (reports["age"]["protected"], reports["age"]["model_input"]) == (True, True)
    assert reports["unit"]["declared"] is False and reports["race"]["declared"] is True

    race = reports["race"]["result"]
    white = reference["race"] == "white"
    entry = race["groups"]["White"]  # the RHC text "white", as its OMB category
    assert (entry["n"], entry["events"]) == (int(white.sum()), int(y[white].sum()))
    assert entry["metrics"]["auroc"]["value"] == pytest.approx(
        roc_auc_score(y[white], risk[white]), abs=1e-12
    )
    assert entry["metrics"]["brier"]["value"] == pytest.approx(
        brier_score_loss(y[white], risk[white]), abs=1e-12
    )
    high = computed.tier_high
    assert entry["metrics"]["sensitivity_high"]["value"] == pytest.approx(
        recall_score(y[white], risk[white] >= high)
    )
    omb = {"white": "White", "black": "Black or African American", "other": "Other Race"}
    frame = MetricFrame(
        metrics=roc_auc_score, y_true=y, y_pred=risk, sensitive_features=reference["race"].map(omb)
    )
    for group, value in frame.by_group.items():
        assert race["groups"][group]["metrics"]["auroc"]["value"] == pytest.approx(value, abs=1e-12)
    want = equalized_odds_difference(y, risk >= high, sensitive_features=reference["race"])
    assert race["disparity"]["equalized_odds_difference"]["high"] == pytest.approx(want, abs=1e-12)

    sex = reports["sex_female"]["result"]["groups"]
    assert set(sex) == {"female", "male"}  # bundle.yaml values: {0: male, 1: female}
    assert sex["female"]["n"] == int((reference["sex_female"] == 1).sum())
    age = reports["age"]["result"]["groups"]
    assert reports["age"]["group_order"] == ["18-44", "45-64", "65-79", "80+"]  # no one under 18
    assert age["45-64"]["n"] == int(((reference["age"] >= 45) & (reference["age"] < 65)).sum())
    shap = reports["unit"]["result"]["overall"]["mean_abs_shap"]
    assert (
        len(shap) == len(computed.input_features()) and "Age" in shap and all(v >= 0 for v in shap.values())
    )
    assert computed.subgroups["settings"]["n_boot"] == 20
    # mean |SHAP| per group with its bootstrap 95% interval, printed on the card as "value (low–high)"
    men = reports["sex_female"]["result"]["groups"]["male"]
    for feature, value in men["mean_abs_shap"].items():
        ci = men["mean_abs_shap_ci"][feature]
        assert ci["ci_low"] <= value <= ci["ci_high"]
    table = next(t for t in subgroup_tables(computed.subgroups)["tables"] if t["column"] == "sex_female")
    first = table["shap"]["features"][0]
    row = next(r for r in table["shap"]["rows"] if r["group"] == "male")
    ci = men["mean_abs_shap_ci"][first]
    assert row["values"][0] == f"{men['mean_abs_shap'][first]:.3f} ({ci['ci_low']:.3f}–{ci['ci_high']:.3f})"


def test_disparity_flags_are_a_card_check_with_their_figures(computed, demo_bundle_dir, alice_client):
    reference = pd.read_parquet(demo_bundle_dir / "reference.parquet")
    risk = reference["expected_risk"].to_numpy()
    check = computed.checks["subgroup_disparity"]
    ratios = [f for f in check["flags"] if f["kind"] == "alert_rate_ratio" and f["column"] == "unit"]
    high = next(f for f in ratios if f["tier"] == "high")
    rates = {
        u: 100 * np.mean(risk[reference["unit"] == u] >= computed.tier_high)
        for u in reference["unit"].unique()
    }
    assert high["lowest"] == min(rates, key=rates.get) and high["highest"] == max(rates, key=rates.get)
    assert high["ratio"] == pytest.approx(min(rates.values()) / max(rates.values()))
    assert high["message"].startswith("Unit: At high or above,")

    card = alice_client.get(CARD).json()
    status = {c["name"]: c["status"] for c in card["checks"]}
    assert status["subgroup_disparity"] == ("flag" if check["flags"] else "pass")
    body = alice_client.get(PAGE).content.decode()
    assert high["message"] in body
    assert 'id="subgroup-table-race"' in body and 'id="subgroup-table-unit"' in body


def test_protected_characteristics_section_lists_the_protected_inputs(model_version, alice_client):
    body = alice_client.get(PAGE).content.decode()
    section = body.split('id="protected-characteristics"')[1].split("</section>")[0]
    assert (
        "<strong>Sex</strong> (<code>sex_female</code>):\n      a model input — “Sex: female”, from ADT"
        in section
    )
    assert "<strong>Age</strong> (<code>age</code>):\n      a model input" in section
    assert "<strong>Race</strong> (<code>race</code>):\n      not a model input" in section
    # Before the worker has run, the card says so instead of showing numbers.
    assert "Being computed by a worker" in body


def test_small_subgroup_is_too_few_to_judge_never_a_number(model_version, settings, alice_client):
    settings.SUBGROUP_BOOTSTRAP_RESAMPLES = 20
    settings.SUBGROUP_MIN_SIZE = 100  # race "other" has 63 reference patients
    version_subgroups_compute(version_id=model_version.pk)
    model_version.refresh_from_db()
    race = next(r for r in model_version.subgroups["subgroups"] if r["column"] == "race")["result"]
    other = race["groups"]["Other Race"]
    assert other["too_few"] is True and set(other) == {"too_few", "n", "events"}
    assert race["disparity"]["alert_rate_ratio"]["high"]["groups_compared"] == [
        "Black or African American",
        "White",
    ]
    assert "Race: Other Race" in model_version.checks["subgroup_disparity"]["too_few"]

    body = alice_client.get(PAGE).content.decode()
    table = body.split('id="subgroup-table-race"')[1].split("</table>")[0]
    row = table.split('<th scope="row">Other Race</th>')[1].split("</tr>")[0]
    assert f"<td>{other['n']}</td><td>{other['events']}</td>" in row
    assert "too few to judge" in row and "(" not in row  # no figure, no interval


def test_compute_is_claimed_once_and_the_sweep_finds_what_is_missing(model_version, settings):
    settings.SUBGROUP_BOOTSTRAP_RESAMPLES = 20
    ModelVersion.objects.filter(pk=model_version.pk).update(subgroups={})  # registered before #18
    assert versions_subgroups_due() == [model_version.pk]
    ModelVersion.objects.filter(pk=model_version.pk).update(
        subgroups={"status": "running", "started_at": "2020-01-01T00:00:00Z"}
    )
    assert version_subgroups_compute(version_id=model_version.pk) == "running"  # claimed elsewhere
    assert versions_subgroups_due() == [model_version.pk]  # a dead worker's claim is released
    assert version_subgroups_compute(version_id=model_version.pk) == "ready"
    assert version_subgroups_compute(version_id=model_version.pk) == "ready"  # nothing done twice
    assert versions_subgroups_due() == []


def test_registration_queues_the_figures_once_committed(
    db, model_store, demo_bundle_dir, settings, monkeypatch, django_capture_on_commit_callbacks
):
    from models_registry import tasks

    queued = []
    monkeypatch.setattr(tasks.version_subgroups_task, "delay", queued.append)
    settings.SUBGROUP_FIGURES_QUEUED = True
    with django_capture_on_commit_callbacks(execute=True):
        version, _ = model_register(path=demo_bundle_dir)
    assert queued == [version.pk]
