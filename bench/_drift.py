"""The seeded year of bench/drift.py's part 2 (the entry point, whose docstring says what is
measured): the bench database, a year of hourly scores with their explanations, alerts and actions,
and the cohort aggregates filled from them. Django is imported inside, after bench/drift.py has set
it up. Every row is labelled simulated."""

from __future__ import annotations

from dataclasses import dataclass


def database_ensure(url_db: str) -> None:
    import psycopg2

    connection = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="postgres")
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [url_db])
        if cursor.fetchone() is None:
            cursor.execute(f'CREATE DATABASE "{url_db}"')
    connection.close()


@dataclass
class _ScoredPool:
    """The demo cohort's scoring split, scored and explained by the registered model once per row."""

    risks: object
    margins: object
    features: list[dict]  # each row's stored features
    contributions: list[list[dict]]  # each row's SHAP values

    def __len__(self) -> int:
        return len(self.features)


def _stored_features(inputs, row: int, names: list[str], specs: dict) -> dict:
    """Row `row` of the encoded inputs as a prediction's stored features (null = not measured)."""
    import numpy as np

    out = {}
    for j, name in enumerate(names):
        value = inputs[row, j]
        if np.isnan(value):
            out[name] = {"value": None, "unit": specs[name].unit, "observed_at": None, "source": None}
            continue
        spec = specs[name]
        if spec.kind == "categorical":
            value = spec.categories[int(value)]
        elif spec.kind == "binary":
            value = int(value)
        else:
            value = float(value)
        out[name] = {"value": value, "unit": spec.unit, "observed_at": None, "source": None}
    return out


def _scored_pool(version) -> _ScoredPool:
    import numpy as np

    from demo import rhc as demo_rhc
    from engine import treeshap as core
    from models_registry.serving import serving_model

    serving = serving_model(version)
    names = serving.feature_names
    pool = demo_rhc.split_cohort(demo_rhc.load_cohort(demo_rhc.DEFAULT_SEED)).scoring
    inputs = serving.model.prepare(pool[names].to_numpy(dtype=np.float64))
    margins = serving.predict_margin(inputs)
    risks = core.sigmoid(margins)
    shap_values = core.explain(serving.explainer, inputs).values
    specs = {f.name: f for f in version.input_features()}
    features = [_stored_features(inputs, i, names, specs) for i in range(len(pool))]
    contributions = [
        [{"name": n, "shap": float(shap_values[i, j])} for j, n in enumerate(names)] for i in range(len(pool))
    ]
    return _ScoredPool(risks=risks, margins=margins, features=features, contributions=contributions)


def _stays(unit: str, b: int, *, hours: int, stay_hours: int, rng) -> tuple[list, list]:
    """(patients, encounters) of one bed, a new patient every `stay_hours`; outcomes for the first 80 %."""
    from patients.models import Encounter, Outcome, Patient

    stays = range(0, hours, stay_hours)
    patients = Patient.objects.bulk_create(
        [
            Patient(
                external_id=f"sim-{unit}-{b}-{s}",
                display_name="Simulated",
                unit=unit,
                bed=str(b),
                simulated=True,
            )
            for s in stays
        ]  # fmt: skip
    )
    encounters = Encounter.objects.bulk_create(
        [
            Encounter(external_id=f"sim-E-{unit}-{b}-{s}", patient=p)
            for s, p in zip(stays, patients, strict=True)
        ]
    )
    # Outcomes arrive for the first 80 % of the year (the rest are still in hospital).
    Outcome.objects.bulk_create(
        [
            Outcome(encounter=e, outcome=bool(rng.random() < 0.3))
            for e in encounters[: int(len(encounters) * 0.8)]
        ]
    )
    return patients, encounters


def _scores(version, scored: _ScoredPool, rows, *, unit: str, b: int, stays: tuple, stay_hours: int, start):
    """One bed's hourly predictions (unsaved): hour h scores pool row rows[h]."""
    from datetime import timedelta

    from patients.models import Prediction

    patients, encounters = stays
    return [
        Prediction(
            registered_model=version.registered_model,
            model_version=version,
            external_id=f"sim/{unit}/{b}/{h}",
            patient=patients[h // stay_hours],
            encounter=encounters[h // stay_hours],
            unit=unit,
            bed=str(b),
            scored_at=start + timedelta(hours=h),
            risk=float(scored.risks[r]),
            margin=float(scored.margins[r]),
            tier=version.tier_for(float(scored.risks[r])),
            features=scored.features[r],
            payload_sha256="0" * 64,
            source="bulk",
            simulated=True,
        )  # fmt: skip
        for h, r in enumerate(rows)
    ]


def _alerts_and_actions(predictions: list, *, unit: str, user, start, rng) -> None:
    """An alert for every medium or high score; a clinician's action on every other alert."""
    from patients.models import Alert, AlertAction

    alerts = Alert.objects.bulk_create(
        [
            Alert(prediction=p, patient_id=p.patient_id, unit=unit, tier=p.tier, risk=p.risk)
            for p in predictions
            if p.tier != "low"
        ],  # fmt: skip
        batch_size=5000,
    )
    reasons = ["already_aware", "not_clinically_relevant", "data_error"]
    AlertAction.objects.bulk_create(
        [
            AlertAction(
                alert=a,
                user=user,
                role="clinician",
                action="dismiss" if i % 3 else "accept",
                reason=reasons[i % 3] if i % 3 else "treatment_changed",
                shown_at=start,
                seconds_to_decision=float(rng.exponential(300)),
                idempotency_key=f"bench-{a.pk}",
            )
            for i, a in enumerate(alerts)
            if i % 2 == 0
        ],  # fmt: skip
        batch_size=5000,
    )


def year_seed(version, *, units: int, beds: int, days: int, start) -> int:
    """Hourly scores of every bed of every unit for `days` days; a new patient every 3 days per bed.
    Feature rows and their SHAP values are drawn from the demo cohort's scoring split, scored and
    explained by the registered model once per distinct row. Labelled simulated."""
    import numpy as np
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from explanations.models import Explanation
    from patients.models import Prediction

    scored = _scored_pool(version)
    user, _ = get_user_model().objects.get_or_create(username="bench-admin", defaults={"is_superuser": True})
    rng = np.random.default_rng(11)
    hours = days * 24
    stay_hours = 72
    total = 0
    for u in range(units):
        unit = f"BENCH-U{u:02d}"
        for b in range(beds):
            with transaction.atomic():
                stays = _stays(unit, b, hours=hours, stay_hours=stay_hours, rng=rng)
                rows = rng.integers(0, len(scored), hours)
                predictions = _scores(
                    version, scored, rows, unit=unit, b=b, stays=stays, stay_hours=stay_hours, start=start
                )
                Prediction.objects.bulk_create(predictions, batch_size=5000)
                Explanation.objects.bulk_create(
                    [
                        Explanation(
                            prediction=p,
                            status="ready",
                            base_value=0.0,
                            contributions=scored.contributions[r],
                        )
                        for p, r in zip(predictions, rows, strict=True)
                    ],  # fmt: skip
                    batch_size=5000,
                )
                _alerts_and_actions(predictions, unit=unit, user=user, start=start, rng=rng)
            total += len(predictions)
    return total


def aggregates_backfill(version) -> int:
    """The seed stores explanations directly (not through the worker), so the explanation engine's
    cohort aggregates are filled here the way it fills them: each ready explanation's SHAP values
    summed per (feature, unit, shift, local day). Setup, not part of the timed compute."""
    from django.conf import settings
    from django.db import connection

    from explanations.models import CohortAggregate, Explanation
    from patients.models import Prediction

    if CohortAggregate.objects.filter(version=version).exists():
        return 0
    aggregates = CohortAggregate._meta.db_table
    explanations = Explanation._meta.db_table
    predictions = Prediction._meta.db_table
    local = "(p.scored_at AT TIME ZONE %s)"
    sql = (
        f"INSERT INTO {aggregates} (version_id, feature, unit, shift, day, count, total, total_abs) "  # noqa: S608
        f"SELECT p.model_version_id, elem->>'name', p.unit, "
        f"CASE WHEN extract(hour FROM {local}) BETWEEN 7 AND 18 THEN 'day' ELSE 'night' END, "
        f"{local}::date, count(*), sum((elem->>'shap')::double precision), "
        "sum(abs((elem->>'shap')::double precision)) "
        f"FROM {explanations} e JOIN {predictions} p ON p.id = e.prediction_id "
        "CROSS JOIN LATERAL jsonb_array_elements(e.contributions) elem "
        "WHERE e.status = 'ready' AND p.model_version_id = %s GROUP BY 1, 2, 3, 4, 5"
    )
    tz = settings.HOSPITAL_TIME_ZONE
    with connection.cursor() as cursor:
        cursor.execute(sql, [tz, tz, version.pk])
        return cursor.rowcount
