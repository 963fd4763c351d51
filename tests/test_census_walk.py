"""A slice of the demo census, walked end to end: one unit's beds over two days, scored every six
hours, posted run by run through the bulk API and explained by the real engine, with clinicians
deciding on alerts as they arrive. Every figure shown is cross-checked against what is stored:

- each alert/score page: the printed risk and calibrated range are the stored ones rounded once, a
  printed risk outside its printed range comes with the correction sentence and its numbers, every
  stored data-quality flag is on the page, and the history table prints the stored risks;
- the worklist after each run (each score is then its patient's current one): the row prints the
  page's risk, and "since previous score" is the difference of the two risks as printed;
- monitoring over the walked window: each alert counted once by its state, the shares as the burden
  table prints them adding up to 100.0%, rounded by the largest remainder;
- the walked payloads encode to the same model inputs in serving and in monitoring.
"""

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest
from django.core.cache import cache
from django.urls import reverse

from accounts.models import Profile
from demo.census import SCORE_EVERY_HOURS, census_payloads
from engine.headline import shown_percent
from explanations.models import Explanation
from models_registry.serving import serving_model
from monitoring import selectors, windows
from monitoring.selectors import Slice
from monitoring.tests.test_encoding import _rows as comparable_rows
from patients.models import Prediction
from tests.fixtures.people import person_create
from tests.fixtures.shown import (
    headline_check,
    history_risks,
    largest_remainder,
    quality_flags_check,
    row_change,
    row_risk,
    score_page,
    shown_shares,
)

pytestmark = pytest.mark.django_db

CLOCK = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
# MICU's 24 beds and NEURO-ICU's 10, whose bedside values include recorded zeros (heart rate, MAP,
# respiratory rate).
UNITS = ("MICU", "NEURO-ICU")
START = CLOCK - timedelta(hours=48)
RUN = timedelta(hours=SCORE_EVERY_HOURS)
# What the units' clinician answers the walk's alerts with, in turn (None: no response). One alert
# gets two actions: the latest decides its state. Over the walk's alerts these give shares that,
# each rounded alone, would not add up to 100.0%.
DECISIONS = [
    [("accept", "treatment_changed")],
    [("acknowledge", "reviewing"), ("dismiss", "already_aware")],
    None,
    [("accept", "investigations_ordered")],
    [("escalate", "senior_review")],
    [("acknowledge", "reviewing")],
]
STATE_AFTER = {
    "accept": "accepted",
    "dismiss": "dismissed",
    "escalate": "escalated",
    "acknowledge": "acknowledged",
}


@dataclass(frozen=True)
class RowShown:
    """A worklist row as shown right after the run that made its score current."""

    risk: int  # printed
    change: int | None  # printed "since previous score" (None: "first score")
    delta_points: int | None  # the row's JSON trend
    previous_id: int | None  # the score the change is measured from


@dataclass
class Walk:
    payloads: list[dict]
    rows: dict[int, RowShown] = field(default_factory=dict)  # prediction id -> its worklist row
    alerts: dict[int, str] = field(default_factory=dict)  # alert id -> state after the decisions
    runs: int = 0


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _post_run(service_client, payloads, capture) -> list[dict]:
    with capture(execute=True):
        response = service_client.post("/api/v1/predictions/bulk/", payloads, format="json")
    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert [r["status"] for r in results] == [201] * len(payloads), results
    return results


def _read_worklist(client, walk: Walk) -> None:
    """The clinician's worklist (both units) as its background refresh reads it: each row's html
    and trend."""
    body = client.get(reverse("worklist-json")).json()
    for row, marker in [(r, 'class="num">') for r in body["alerts"]] + [
        (r, 'class="low-risk">') for r in body["low"]
    ]:
        points = row["trend"]["points"]
        walk.rows[points[-1]["prediction"]] = RowShown(
            risk=row_risk(row["html"], marker),
            change=row_change(row["html"]),
            delta_points=row["trend"]["delta_points"],
            previous_id=points[-2]["prediction"] if len(points) > 1 else None,
        )


def _decide(client, results: list[dict], walk: Walk) -> None:
    for result in results:
        if result["alert"] is None:
            continue
        alert_id = result["alert"]["id"]
        decisions = DECISIONS[len(walk.alerts) % len(DECISIONS)] or []
        for action, reason in decisions:
            response = client.post(
                reverse("alert-actions", args=[alert_id]),
                {"action": action, "reason": reason},
                content_type="application/json",
            )
            assert response.status_code == 201, response.content
        walk.alerts[alert_id] = STATE_AFTER[decisions[-1][0]] if decisions else "new"


@pytest.fixture
def nurse(db):
    return person_create(username="dana", role=Profile.Role.CLINICIAN, units=list(UNITS))


@pytest.fixture
def nurse_client(nurse, client):
    client.force_login(nurse)
    return client


@pytest.fixture
def walk(model_version, service_client, nurse_client, django_capture_on_commit_callbacks) -> Walk:
    """The two units' census scores of the 48 hours before CLOCK, posted one 6-hour run at a time. After
    each run every score of it is its patient's current one (a patient is scored once per run), so
    the worklist then shows each walked score's change since the previous one."""
    cache.clear()
    census = census_payloads(model_name=model_version.registered_model.name, clock=CLOCK)
    payloads = [p for p in census if p["patient"]["unit"] in UNITS and START <= _at(p["scored_at"]) < CLOCK]
    walk = Walk(payloads=payloads)
    run_start = START
    while run_start < CLOCK:
        run = [p for p in payloads if run_start <= _at(p["scored_at"]) < run_start + RUN]
        run_start += RUN
        if not run:
            continue
        assert len({p["patient"]["id"] for p in run}) == len(run)  # one score per patient per run
        results = _post_run(service_client, run, django_capture_on_commit_callbacks)
        _read_worklist(nurse_client, walk)
        _decide(nurse_client, results, walk)
        walk.runs += 1
    yield walk
    cache.clear()


def test_every_census_explanation_shows_figures_that_agree(walk, nurse_client):
    explained = list(
        Explanation.objects.filter(prediction__unit__in=UNITS)
        .select_related("prediction__model_version__registered_model", "prediction__patient")
        .order_by("prediction__scored_at", "prediction_id")
    )
    assert len(explained) == len(walk.payloads)
    assert all(e.status == Explanation.Status.READY for e in explained)
    corrected = flagged = abstained = moved = 0
    for explanation in explained:
        prediction = explanation.prediction
        page = score_page(nurse_client, prediction)
        corrected += headline_check(page, explanation)
        flagged += quality_flags_check(page, explanation)
        abstained += explanation.abstain

        # The history table prints this score's and the earlier scores' stored risks, rounded once.
        earlier = list(
            Prediction.objects.filter(patient=prediction.patient, scored_at__lt=prediction.scored_at)
            .order_by("-scored_at")
            .values_list("pk", "risk")[:20]
        )
        printed = history_risks(page)
        assert printed == [shown_percent(prediction.risk)] + [shown_percent(r) for _, r in earlier]

        # "Since previous score" on the worklist, when this score was current: the difference of
        # the risk this page prints and the one it prints for the previous score.
        row = walk.rows[prediction.pk]
        assert row.risk == printed[0], prediction.pk
        if not earlier:
            assert row.change is None and row.delta_points is None and row.previous_id is None
            continue
        assert row.previous_id == earlier[0][0]
        assert row.change == row.delta_points == printed[0] - printed[1], (prediction.pk, row, printed[:2])
        moved += row.change != 0

    # Not vacuous: scores outside their calibrated range, flagged zeros, and trends with content.
    assert corrected > 0 and flagged > 0 and moved > 0
    assert len(walk.rows) == len(explained) and walk.runs == 8
    patients = len({e.prediction.patient_id for e in explained})
    print(f"\ncensus walk: {len(explained)} explanations of {patients} patients, {len(walk.alerts)} alerts, "
          f"{corrected} corrected, {flagged} flags, {abstained} abstentions, "
          f"{moved} changes since the previous score")  # fmt: skip


def test_the_walked_window_burden_shares_add_up_as_shown(walk, charlie_client, model_version):
    window = {"version": model_version.pk, "from": _iso(START), "to": _iso(CLOCK)}
    response = charlie_client.get("/monitoring/data/burden/", window)
    assert response.status_code == 200, response.content
    burden = response.json()
    counted = Counter(walk.alerts.values())
    expected = {state: counted.get(state, 0) for state in burden["overall"]["by_state"]}
    assert burden["overall"]["alerts"] == len(walk.alerts)
    assert burden["overall"]["by_state"] == expected
    assert [u["unit"] for u in burden["units"]] == sorted(UNITS)
    for row in [*burden["units"], burden["overall"]]:
        shown = shown_shares(row["percent_by_state"])
        assert sum(shown.values()) == Decimal("100.0"), shown
        assert shown == largest_remainder(row["by_state"]), (shown, row["by_state"])
    # The walk's counts are ones where rounding each share alone would not add up to 100.0.
    total = sum(expected.values())
    assert sum(Decimal(f"{100 * n / total:.1f}") for n in expected.values()) != Decimal("100.0"), expected


def test_the_walked_payloads_encode_alike_in_serving_and_monitoring(walk, model_version):
    serving = serving_model(model_version)
    posted = [p["features"] for p in walk.payloads]
    by_serving = serving.encode_many(posted)
    # The one-row path ingest takes for a single prediction gives the same rows.
    np.testing.assert_array_equal(np.vstack([serving.encode(f) for f in posted]), by_serving)
    stored = {p.external_id: p for p in Prediction.objects.filter(unit__in=UNITS)}
    in_order = [stored[p["external_id"]] for p in walk.payloads]
    # These rows are what was scored: the model's output on them is the stored risk.
    np.testing.assert_allclose(serving.predict_risk(by_serving), [p.risk for p in in_order], atol=1e-9)

    specs = selectors.feature_specs(model_version)
    assert [s.name for s in specs] == serving.feature_names
    by_monitoring = np.column_stack(
        [windows.encode_column([p.features[s.name] for p in in_order], s) for s in specs]
    )
    np.testing.assert_array_equal(by_monitoring, by_serving)
    for collect in (windows.window_collect_sql, windows.window_collect_streamed):
        window = collect(model_version, START, CLOCK, Slice("overall"), risk_edges=np.array([0.5]))
        assert window.n == len(posted) and not window.sampled
        sample = window.sample[serving.feature_names].to_numpy(dtype=float)
        assert comparable_rows(sample) == comparable_rows(by_serving), collect.__name__
