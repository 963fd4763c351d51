"""The monitoring dashboard and its chart data, through the test client against PostgreSQL."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from explanations.services import outcome_record, prediction_ingest_many
from models_registry.serving import serving_model
from monitoring import selectors, services, windows
from monitoring.selectors import Slice
from monitoring.tasks import monitoring_refresh
from patients.models import Alert, AlertAction, Prediction

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
WINDOW = {"from": "2026-03-08T00:00:00Z", "to": "2026-03-10T00:00:00Z"}


pytestmark = pytest.mark.usefixtures("fresh_cache")


@pytest.fixture
def scored(model_version, prediction_payload, charlie):
    """The 60 demo patients scored once each over two days (one every 48 minutes), 20 outcomes known,
    and actions on the first alerts: 2 dismissed (already aware, data error), 1 accepted."""
    start = datetime(2026, 3, 8, 0, 0, tzinfo=UTC)
    payloads = []
    for i in range(prediction_payload.count):
        payload = prediction_payload(
            i, scored_at=(start + timedelta(minutes=48 * i)).strftime("%Y-%m-%dT%H:%M:%SZ")
        )
        for entry in payload["features"].values():
            entry.pop("observed_at", None)
        payloads.append(payload)
    results = prediction_ingest_many(payloads=payloads, source="bulk", simulated=True)
    assert all(hasattr(r, "prediction") for r in results)
    for i, payload in enumerate(payloads[:20]):
        outcome_record(encounter_id=payload["encounter_id"], outcome=i % 3 == 0, occurred_at=None)
    alerts = list(Alert.objects.order_by("pk")[:3])
    for alert, (action, reason) in zip(
        alerts,
        [("dismiss", "already_aware"), ("dismiss", "data_error"), ("accept", "treatment_changed")],
        strict=True,
    ):
        AlertAction.objects.create(
            alert=alert, user=charlie, role="admin", action=action, reason=reason,
            shown_at=NOW, seconds_to_decision=90.0, idempotency_key=f"k-{alert.pk}",
        )  # fmt: skip
    return payloads


def test_admins_only(alice_client, auditor_client, charlie_client, client, model_version):
    assert client.get("/monitoring/").status_code == 302
    assert "/login" in client.get("/monitoring/")["Location"]
    assert alice_client.get("/monitoring/").status_code == 403
    assert auditor_client.get("/monitoring/").status_code == 403
    page = charlie_client.get("/monitoring/")
    assert page.status_code == 200
    assert b"vendor/plotly/plotly.min.js" in page.content
    assert client.get("/monitoring/data/summary/").status_code == 401
    denied = alice_client.get("/monitoring/data/summary/")
    assert denied.status_code == 403 and denied.json()["error"] == "permission_denied"


def test_summary_against_the_reference_set(charlie_client, scored, model_version):
    response = charlie_client.get("/monitoring/data/summary/", {"version": model_version.pk, **WINDOW})
    assert response.status_code == 200, response.content
    summary = response.json()
    assert summary["n_current"] == 60
    assert summary["simulated_current"] is True
    assert summary["n_reference"] == model_version.reference_size
    inputs = [f.name for f in model_version.input_features()]
    assert sorted(row["feature"] for row in summary["features"]) == sorted(inputs)
    levels = [row["severity_level"] for row in summary["features"]]
    assert levels == sorted(levels, reverse=True)
    # Missingness is the share not measured among the rows actually posted.
    weight = next(row for row in summary["features"] if row["feature"] == "weight")
    posted_missing = np.mean([p["features"]["weight"]["value"] is None for p in scored])
    assert weight["missing_current"] == pytest.approx(posted_missing)

    perf = summary["performance"]["overall"]
    assert perf["realised"]["n"] == 20 and perf["realised"]["events"] == 7
    assert perf["estimate"]["estimate"] is True and perf["estimate"]["n"] == 60

    burden = summary["burden"]
    assert burden["overrides_by_reason"] == {"already_aware": 1, "data_error": 1}
    alerts = Alert.objects.count()
    patient_days = Prediction.objects.values("patient_id", "scored_at__date").distinct().count()
    assert burden["overall"]["alerts"] == alerts
    assert burden["overall"]["alerts_per_100_patient_days"] == pytest.approx(100 * alerts / patient_days)
    # Each alert once, by the state its latest action gives it; the shares as shown add up to 100%.
    assert burden["overall"]["by_state"] == {
        "new": alerts - 3, "acknowledged": 0, "accepted": 1, "escalated": 0, "dismissed": 2
    }  # fmt: skip
    assert round(sum(burden["overall"]["percent_by_state"].values()) * 10) == 1000
    assert burden["reason_labels"]["already_aware"] == "Already aware, plan in place"
    assert burden["time_to_decision"]["n"] == 3 and burden["time_to_decision"]["median"] == 90.0


def test_slices_and_chart_data(charlie_client, scored, model_version):
    units = [p["patient"]["unit"] for p in scored]
    unit = max(set(units), key=units.count)
    query = {"version": model_version.pk, **WINDOW}
    by_unit = charlie_client.get("/monitoring/data/summary/", {**query, "slice": f"unit:{unit}"}).json()
    assert by_unit["n_current"] == units.count(unit)
    reference = serving_model(model_version).reference
    assert by_unit["n_reference"] == int((reference["unit"] == unit).sum()) > 0
    day = charlie_client.get("/monitoring/data/summary/", {**query, "slice": "shift:day"}).json()
    night = charlie_client.get("/monitoring/data/summary/", {**query, "slice": "shift:night"}).json()
    hours = [int(p["scored_at"][11:13]) for p in scored]
    assert day["n_current"] == sum(7 <= h <= 18 for h in hours)
    assert day["n_current"] + night["n_current"] == 60

    feature = charlie_client.get("/monitoring/data/feature/", {**query, "feature": "creatinine"}).json()
    assert feature["kind"] == "histogram" and len(feature["edges"]) == len(feature["current"]) + 1
    assert sum(feature["current"]) == pytest.approx(1.0, abs=1e-4)
    prediction = charlie_client.get("/monitoring/data/prediction/", query).json()
    assert prediction["x"] == ["2026-03-08", "2026-03-09"] and sum(prediction["n"]) == 60
    perf = charlie_client.get("/monitoring/data/performance/", query).json()
    assert perf["x"] == ["2026-03-08", "2026-03-09"] and sum(perf["encounters"]) == 60

    missing = charlie_client.get("/monitoring/data/feature/", {**query, "feature": "nope"})
    assert missing.status_code == 404 and missing.json()["fields"] == {"feature": [missing.json()["detail"]]}
    bad = charlie_client.get("/monitoring/data/summary/", {**query, "slice": "ward:1"})
    assert bad.status_code == 400 and "slice" in bad.json()["fields"]
    bad = charlie_client.get("/monitoring/data/summary/", {**query, "from": "yesterday"})
    assert bad.status_code == 400 and "from" in bad.json()["fields"]


def test_past_window_reference_and_cached_until_refreshed(
    charlie_client, scored, model_version, prediction_payload
):
    query = {
        "version": model_version.pk, "from": "2026-03-09T00:00:00Z", "to": "2026-03-10T00:00:00Z",
        "reference": "window", "ref_from": "2026-03-08T00:00:00Z", "ref_to": "2026-03-09T00:00:00Z",
    }  # fmt: skip
    first = charlie_client.get("/monitoring/data/summary/", query).json()
    in_first_day = sum(p["scored_at"] < "2026-03-09" for p in scored)
    assert first["n_reference"] == in_first_day and first["n_current"] == 60 - in_first_day

    late = prediction_payload(0, external_id="late/1", scored_at="2026-03-09T23:00:00Z")
    for entry in late["features"].values():
        entry.pop("observed_at", None)
    prediction_ingest_many(payloads=[late], source="rest")
    # Read from the cache: the new score is not there until the summary is recomputed.
    assert charlie_client.get("/monitoring/data/summary/", query).json()["n_current"] == first["n_current"]
    assert charlie_client.post("/monitoring/refresh/", query).status_code == 200
    assert (
        charlie_client.get("/monitoring/data/summary/", query).json()["n_current"] == first["n_current"] + 1
    )


def test_periodic_refresh_warms_the_default_views(scored, model_version):
    start, end = services.default_window(now=datetime(2026, 3, 9, 23, 30, tzinfo=UTC))
    assert end == datetime(2026, 3, 10, 0, 0, tzinfo=UTC)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(services, "default_window", lambda version_id=None, now=None: (start, end))
        queued = monitoring_refresh()
    units = sorted({p["patient"]["unit"] for p in scored})
    assert queued == 1 + len(units) + 2
    overall = services.summary_cached(services.Comparison(version_id=model_version.pk, start=start, end=end))
    assert overall is not None and overall["n_current"] == 60
    micu = services.Comparison(version_id=model_version.pk, start=start, end=end, where=f"unit:{units[0]}")
    assert services.summary_cached(micu)["slice"] == f"unit:{units[0]}"


def test_window_streams_in_chunks_into_a_bounded_sample(scored, model_version):
    start, end = datetime(2026, 3, 8, tzinfo=UTC), datetime(2026, 3, 10, tzinfo=UTC)
    full = windows.window_collect_streamed(
        model_version, start, end, Slice("overall"), risk_edges=np.array([0.5])
    )
    small = windows.window_collect_streamed(
        model_version, start, end, Slice("overall"), risk_edges=np.array([0.5]), sample_size=10, chunk_size=7
    )
    assert full.n == small.n == 60
    assert len(small.sample) == 10 and small.sampled and not full.sampled
    # Counts stay exact whatever the sample size; the sample is a subset of the rows.
    assert small.missing.tolist() == full.missing.tolist()
    assert sum(c.sum() for c in small.risk_counts.values()) == 60
    rows = {tuple(np.nan_to_num(r, nan=-1)) for r in full.sample.to_numpy()}
    assert all(tuple(np.nan_to_num(r, nan=-1)) in rows for r in small.sample.to_numpy())


def _explain(model_version, predictions, shap_of) -> None:
    """Mark the predictions' explanations ready as the worker does: in one transaction with their
    cohort aggregates (explanations.services.cohort_explanation_add)."""
    from django.db import transaction

    from explanations.models import Explanation
    from explanations.services.cohort import cohort_explanation_add

    serving = serving_model(model_version)
    names = serving.feature_names
    for i, prediction in enumerate(predictions):
        shap = np.array([shap_of(i, n) for n in names])
        contributions = [{"name": n, "shap": float(v)} for n, v in zip(names, shap, strict=True)]
        with transaction.atomic():
            Explanation.objects.filter(prediction=prediction).update(
                status="ready", contributions=contributions
            )
            cohort_explanation_add(
                prediction=prediction, names=names, values=serving.encode(prediction.features), shap=shap
            )


def test_attribution_drift_from_the_cohort_aggregates(charlie_client, scored, model_version):
    predictions = Prediction.objects.filter(model_version=model_version).order_by("pk")[:10]
    # Creatinine dominates every current explanation.
    _explain(model_version, predictions, lambda i, n: (2.0 if n == "creatinine" else 0.01) * (-1) ** i)
    summary = charlie_client.get("/monitoring/data/summary/", {"version": model_version.pk, **WINDOW}).json()
    attribution = summary["attribution"]
    assert attribution["available"] and attribution["n_current"] == 10
    assert attribution["n_reference"] == model_version.reference_size
    creatinine = next(r for r in attribution["features"] if r["feature"] == "creatinine")
    assert creatinine["current"] == pytest.approx(2.0) and creatinine["rank_current"] == 1
    # The chart names each feature by its label, as the drift table and the alert page do.
    labels = {f.name: f.label for f in model_version.features.all()}
    assert all(r["label"] == labels[r["feature"]] for r in attribution["features"])
    age = next(r for r in attribution["features"] if r["feature"] == "age")
    assert age["current"] == pytest.approx(0.01)
    assert age["reference"] > 0.01  # the reference set's own SHAP, computed with the serving explainer


def test_attribution_of_a_window_with_partial_days_adds_aggregates_and_explanations(
    charlie_client, scored, model_version
):
    """From 03-08 06:00: the partial day 03-08 is summed from the explanations, the whole day 03-09
    from the aggregates; the mean is that of every explanation in the window."""
    ordered = list(Prediction.objects.filter(model_version=model_version).order_by("scored_at"))
    chosen = ordered[::6]  # scored at 0 h, 4.8 h, ..., 43.2 h after 03-08 00:00
    _explain(model_version, chosen, lambda i, n: float(6 * i + 1) if n == "creatinine" else 0.01)
    window = {"from": "2026-03-08T06:00:00Z", "to": "2026-03-10T00:00:00Z"}
    summary = charlie_client.get("/monitoring/data/summary/", {"version": model_version.pk, **window}).json()
    start = datetime(2026, 3, 8, 6, tzinfo=UTC)
    inside = [6 * i + 1 for i, p in enumerate(chosen) if p.scored_at >= start]
    assert len(inside) == 8  # 3 on the partial day, 5 on the whole day
    attribution = summary["attribution"]
    assert attribution["n_current"] == 8
    creatinine = next(r for r in attribution["features"] if r["feature"] == "creatinine")
    assert creatinine["current"] == pytest.approx(np.mean(inside))
    assert selectors.whole_days(start, datetime(2026, 3, 10, tzinfo=UTC)) == (
        datetime(2026, 3, 9, tzinfo=UTC),
        datetime(2026, 3, 10, tzinfo=UTC),
    )
    assert selectors.whole_days(start, datetime(2026, 3, 9, 5, tzinfo=UTC)) is None


def test_counts_in_sql_equal_the_streamed_counts(scored, model_version):
    """The PostgreSQL path (GROUP BY + a sample chosen in SQL) counts exactly what streaming every
    row counts, per slice; only the sampled rows differ (both uniform, by different hashes)."""
    start, end = datetime(2026, 3, 8, 5, tzinfo=UTC), datetime(2026, 3, 10, tzinfo=UTC)
    edges = np.array([0.1, 0.2, 0.35, 0.5])
    for where in (Slice("overall"), Slice("shift", "night"), Slice("unit", "MICU")):
        for bucket in ("day", "week"):
            sql = windows.window_collect_sql(
                model_version, start, end, where, risk_edges=edges, bucket=bucket, sample_size=15
            )
            streamed = windows.window_collect_streamed(
                model_version, start, end, where, risk_edges=edges, bucket=bucket, sample_size=15
            )
            assert sql.n == streamed.n > 0
            assert sql.sampled == streamed.sampled == (sql.n > 15)
            assert {k: v.tolist() for k, v in sql.risk_counts.items()} == {
                k: v.tolist() for k, v in streamed.risk_counts.items()
            }
            assert sql.tier_counts == streamed.tier_counts
            assert sql.risk_histogram.tolist() == streamed.risk_histogram.tolist()
            assert sql.patient_days == streamed.patient_days
            assert sql.encounters == streamed.encounters
            assert len(sql.sample) == len(streamed.sample) == min(15, sql.n)
            # Missingness is exact when the window fits in the sample.
            whole = windows.window_collect_sql(
                model_version, start, end, where, risk_edges=edges, bucket=bucket
            )
            assert not whole.sampled and whole.missing.tolist() == streamed.missing.tolist()
    # The sample is fixed by the ids: the same window gives the same sample.
    again = windows.window_collect_sql(
        model_version, start, end, Slice("overall"), risk_edges=edges, sample_size=15
    )
    first = windows.window_collect_sql(
        model_version, start, end, Slice("overall"), risk_edges=edges, sample_size=15
    )
    assert np.array_equal(again.sample.to_numpy(), first.sample.to_numpy(), equal_nan=True)


def test_the_default_window_is_the_latest_week_with_scores_not_an_empty_one(
    scored, model_version, charlie_client
):
    """The scores are from March 2026; today's wall clock is later. The dashboard opens on the week
    that ends the hour after the newest score, and its summary counts every one of the 60 scores."""
    newest = Prediction.objects.filter(model_version=model_version).latest("scored_at").scored_at
    start, end = services.default_window(model_version.pk, now=datetime(2026, 12, 2, 9, 15, tzinfo=UTC))
    assert end == newest.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    assert end - start == timedelta(days=services.DEFAULT_WINDOW_DAYS)
    # A score stamped ahead of the server's clock does not move the window past the current hour.
    early = newest - timedelta(hours=5)
    expected_end = early.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    assert services.default_window(model_version.pk, now=early)[1] == expected_end

    page = charlie_client.get("/monitoring/").content.decode()
    assert f'value="{start:%Y-%m-%dT%H:%M}"' in page and f'value="{end:%Y-%m-%dT%H:%M}"' in page
    comparison = services.Comparison(version_id=model_version.pk, start=start, end=end)
    assert services.summary_compute(comparison=comparison)["n_current"] == 60
