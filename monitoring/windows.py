"""One window of stored predictions, collected into bounded aggregates (see monitoring.selectors'
docstring): counted and sampled in SQL on PostgreSQL, streamed in chunks elsewhere. Both read the
stored inputs through engine.encoding, the rule serving uses.

The sample carries each row's encounter and score time, so feature drift can compare one row per
encounter (its latest score in the window, `latest_per_encounter`), as the reference set holds one
row per patient: a patient scored every 6 hours is one patient, not 28 independent ones."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd
from django.db import connection

from engine import drift
from engine.encoding import Codec, encode_column_lenient
from engine.tiers import TIER_NAMES_MILDEST_FIRST
from models_registry.models import ModelVersion
from patients.models import Outcome, Prediction

from .selectors import (
    CHUNK_SIZE,
    RISK_HISTOGRAM_BINS,
    SAMPLE_SIZE,
    Slice,
    feature_specs,
    hospital_time_zone,
    predictions_in,
)


def _bucket_labels(times: pd.Series, bucket: str) -> np.ndarray:
    local = pd.to_datetime(times, utc=True).dt.tz_convert(hospital_time_zone())
    days = local.dt.tz_localize(None).dt.normalize()
    if bucket == "week":
        days = days - pd.to_timedelta(days.dt.day_of_week, unit="D")
    return days.dt.strftime("%Y-%m-%d").to_numpy()


def _priority(ids: np.ndarray) -> np.ndarray:
    """splitmix64 of the prediction id: a fixed pseudo-random order for bottom-k sampling."""
    with np.errstate(over="ignore"):
        z = ids.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


RISK, ENCOUNTER, SCORED = "__risk__", "__encounter__", "__scored__"
EXTRA_COLUMNS = [RISK, ENCOUNTER, SCORED]


def _epoch_seconds(times: pd.Series) -> np.ndarray:
    moments = pd.to_datetime(times, utc=True)
    return ((moments - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)).to_numpy(dtype=np.float64)


def latest_per_encounter(sample: pd.DataFrame) -> pd.DataFrame:
    """The sample's latest row of each encounter (rows without an encounter each stand alone)."""
    if sample is None or sample.empty:
        return sample
    alone = sample[sample[ENCOUNTER].isna()]
    latest = (
        sample[sample[ENCOUNTER].notna()]
        .sort_values([ENCOUNTER, SCORED], kind="stable")
        .drop_duplicates(ENCOUNTER, keep="last")
    )
    return pd.concat([latest, alone]).sort_index()


def encode_column(values: list, spec: drift.FeatureSpec) -> np.ndarray:
    """Stored payload values (as JSON values) as model inputs, by serving's rule (engine.encoding);
    a value not measured, or one serving would refuse, is NaN."""
    return encode_column_lenient(Codec(spec.name, spec.kind, tuple(spec.categories)), values)


@dataclass
class WindowData:
    """A streamed window's bounded aggregates (see the module docstring)."""

    names: list[str]
    n: int = 0
    missing: np.ndarray | None = None
    sample: pd.DataFrame | None = None
    risk_counts: dict[str, np.ndarray] = field(default_factory=dict)
    tier_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    risk_histogram: np.ndarray | None = None
    patient_days: dict[str, int] = field(default_factory=dict)  # unit -> distinct (patient, local day)
    encounters: dict[int, tuple] = field(default_factory=dict)

    @property
    def sampled(self) -> bool:
        return self.sample is not None and len(self.sample) < self.n


def window_collect(
    version: ModelVersion,
    start: datetime,
    end: datetime,
    where: Slice,
    *,
    risk_edges: np.ndarray,
    bucket: str = "day",
    sample_size: int = SAMPLE_SIZE,
    chunk_size: int = CHUNK_SIZE,
) -> WindowData:
    """One window's WindowData: counted and sampled in the database on PostgreSQL, streamed elsewhere."""
    if connection.vendor == "postgresql":
        return window_collect_sql(
            version, start, end, where, risk_edges=risk_edges, bucket=bucket, sample_size=sample_size
        )
    return window_collect_streamed(
        version, start, end, where, risk_edges=risk_edges, bucket=bucket,
        sample_size=sample_size, chunk_size=chunk_size,
    )  # fmt: skip


# The label of a row's day (or week) in the hospital's time zone, as SQL (params: bucket, time zone).
_DAY_SQL = "to_char(date_trunc(%s, p.scored_at AT TIME ZONE %s), 'YYYY-MM-DD')"


def _sql_counts(
    cursor, data: WindowData, scope: str, params: list, risk_edges: np.ndarray, bucket: str, tz: str
) -> None:
    """Rows, risk-bin counts, tier counts by day and the risk histogram, counted by GROUP BY."""
    edges = np.asarray(risk_edges, dtype=np.float64)
    # bin_counts' bins are (-inf, e0], (e0, e1], ...: the index is the number of edges below the
    # risk, i.e. len(edges) - width_bucket(-risk, sorted(-edges)).
    negated = sorted(float(-e) for e in edges)
    risk_bin, bin_params = ("%s - width_bucket(-p.risk, %s::double precision[])", [len(edges), negated])
    if not len(edges):
        risk_bin, bin_params = "0", []
    hist_bin = f"least(greatest(width_bucket(p.risk, 0, 1, {RISK_HISTOGRAM_BINS}), 1), {RISK_HISTOGRAM_BINS})"
    cursor.execute(
        f"SELECT {_DAY_SQL}, p.tier, {risk_bin}, {hist_bin}, count(*) {scope} GROUP BY 1, 2, 3, 4",  # noqa: S608
        [bucket, tz, *bin_params, *params],
    )
    for day, tier, index, hist, count in cursor.fetchall():
        data.n += count
        counts = data.risk_counts.setdefault(day, np.zeros(len(edges) + 2))
        counts[int(index)] += count
        tiers = data.tier_counts.setdefault(day, dict.fromkeys(TIER_NAMES_MILDEST_FIRST, 0))
        tiers[tier] = tiers.get(tier, 0) + int(count)
        data.risk_histogram[int(hist) - 1] += count


def _sql_encounters(cursor, sub_sql: str, params: list, bucket: str, tz: str) -> dict[int, tuple]:
    """Encounter id -> (scored_at, risk, outcome, day label) of each encounter's newest score."""
    table = Prediction._meta.db_table
    outcomes = Outcome._meta.db_table
    cursor.execute(
        f"SELECT DISTINCT ON (p.encounter_id) p.encounter_id, p.scored_at, p.risk, o.outcome, {_DAY_SQL} "  # noqa: S608
        f"FROM {table} p LEFT JOIN {outcomes} o ON o.encounter_id = p.encounter_id "
        f"WHERE p.encounter_id IS NOT NULL AND p.id IN ({sub_sql}) "
        "ORDER BY p.encounter_id, p.scored_at DESC, p.id DESC",
        [bucket, tz, *params],
    )
    return {
        encounter: (scored_at, float(risk), outcome, day)
        for encounter, scored_at, risk, outcome, day in cursor.fetchall()
    }


def _sql_sample_rows(cursor, names: list[str], sub_sql: str, params: list, sample_size: int) -> list:
    """(risk, encounter id, scored_at as epoch seconds, [posted value as JSON text, in model order])
    of the rows sampled by hashed id."""
    table = Prediction._meta.db_table
    # Each features document is read once.
    cursor.execute(
        "SELECT p.risk, p.encounter_id, extract(epoch FROM p.scored_at), "  # noqa: S608
        "ARRAY(SELECT f.value -> 'value' FROM unnest(%s::text[]) WITH ORDINALITY "
        "AS n(name, i) LEFT JOIN jsonb_each(p.features) f ON f.key = n.name ORDER BY n.i) "
        f"FROM {table} p WHERE p.id IN ("
        f"SELECT s.id FROM ({sub_sql}) s ORDER BY hashint8(s.id), s.id LIMIT %s)",
        [names, *params, sample_size],
    )
    return cursor.fetchall()


def _fill_sample(data: WindowData, specs: list[drift.FeatureSpec], rows: list) -> None:
    """The sample frame and the not-measured counts of WindowData from the sampled rows."""
    names = data.names
    # Django reads jsonb as its JSON text (it decodes JSONField itself): decode each value here.
    posted = [[None if text is None else json.loads(text) for text in row[-1]] for row in rows]
    values = [encode_column([row[j] for row in posted], spec) for j, spec in enumerate(specs)]
    extra = np.array([[np.nan if v is None else float(v) for v in row[:3]] for row in rows], dtype=np.float64)
    # Not measured: exact when the sample is the whole window, else the sample's share times the
    # rows (a uniform sample: standard error at most 0.5 / sqrt(k) = 0.002 of the share for k = 50,000).
    share = np.isnan(np.column_stack(values)).mean(axis=0) if rows else np.zeros(len(names))
    data.missing = np.rint(share * data.n).astype(np.int64)
    data.sample = pd.DataFrame(
        np.column_stack([*values, extra]) if rows else np.empty((0, len(names) + len(EXTRA_COLUMNS))),
        columns=[*names, *EXTRA_COLUMNS],
    )


def window_collect_sql(
    version: ModelVersion,
    start: datetime,
    end: datetime,
    where: Slice,
    *,
    risk_edges: np.ndarray,
    bucket: str = "day",
    sample_size: int = SAMPLE_SIZE,
) -> WindowData:
    """PostgreSQL: exact counts by GROUP BY, the sample's ids chosen in SQL (see the module docstring).

    Only table names (from the models) and Django's own compiled subquery are interpolated into the
    SQL; every value is a query parameter.
    """
    specs = feature_specs(version)
    names = [s.name for s in specs]
    tz = str(hospital_time_zone())
    sub_sql, sub_params = predictions_in(version, start, end, where).values("id").query.sql_with_params()
    scope = f"FROM {Prediction._meta.db_table} p WHERE p.id IN ({sub_sql})"
    data = WindowData(names=names, missing=np.zeros(len(names), dtype=np.int64))
    data.risk_histogram = np.zeros(RISK_HISTOGRAM_BINS, dtype=np.int64)
    with connection.cursor() as cursor:
        _sql_counts(cursor, data, scope, list(sub_params), risk_edges, bucket, tz)
        cursor.execute(
            f"SELECT p.unit, count(DISTINCT (p.patient_id, (p.scored_at AT TIME ZONE %s)::date)) "  # noqa: S608
            f"{scope} GROUP BY 1",
            [tz, *sub_params],
        )
        data.patient_days = {unit: int(days) for unit, days in cursor.fetchall()}
        data.encounters = _sql_encounters(cursor, sub_sql, list(sub_params), bucket, tz)
        rows = _sql_sample_rows(cursor, names, sub_sql, list(sub_params), sample_size)
    _fill_sample(data, specs, rows)
    return data


_STREAMED_COLUMNS = ["id", "scored_at", "risk", "tier", "unit", "patient", "encounter", "outcome", "features"]


def _add_risk_and_tiers(
    data: WindowData, frame: pd.DataFrame, risk: np.ndarray, labels: np.ndarray, risk_edges: np.ndarray
) -> None:
    """Add a chunk's risk histogram, and its risk-bin and tier counts by day label, to WindowData."""
    hist_edges = np.linspace(0, 1, RISK_HISTOGRAM_BINS + 1)
    data.risk_histogram += np.histogram(np.clip(risk, 0, 1), bins=hist_edges)[0]
    for label in np.unique(labels):
        mask = labels == label
        counts = drift.bin_counts(risk[mask], risk_edges)
        data.risk_counts[label] = data.risk_counts.get(label, 0) + counts
        tiers = data.tier_counts.setdefault(label, dict.fromkeys(TIER_NAMES_MILDEST_FIRST, 0))
        for tier, count in frame.loc[mask, "tier"].value_counts().items():
            tiers[tier] = tiers.get(tier, 0) + int(count)


def _add_patient_days(patient_days: dict[str, set], frame: pd.DataFrame, tz) -> None:
    local_days = (
        pd.to_datetime(frame["scored_at"], utc=True).dt.tz_convert(tz).dt.strftime("%Y-%m-%d").to_numpy()
    )
    for unit, patient, day in zip(frame["unit"], frame["patient"], local_days, strict=True):
        patient_days.setdefault(unit, set()).add((patient, day))


def _add_encounters(data: WindowData, frame: pd.DataFrame, labels: np.ndarray) -> None:
    """Keep each encounter's newest score seen so far (scored_at, risk, outcome, day label)."""
    with_encounter = frame[frame["encounter"].notna()]
    for encounter, scored_at, score, outcome, label in zip(
        with_encounter["encounter"],
        with_encounter["scored_at"],
        with_encounter["risk"],
        with_encounter["outcome"],
        labels[frame["encounter"].notna().to_numpy()],
        strict=True,
    ):
        seen = data.encounters.get(encounter)
        if seen is None or scored_at > seen[0]:
            data.encounters[encounter] = (scored_at, float(score), outcome, label)


def window_collect_streamed(
    version: ModelVersion,
    start: datetime,
    end: datetime,
    where: Slice,
    *,
    risk_edges: np.ndarray,
    bucket: str = "day",
    sample_size: int = SAMPLE_SIZE,
    chunk_size: int = CHUNK_SIZE,
) -> WindowData:
    """Stream one window's predictions in chunks of `chunk_size` into WindowData."""
    specs = feature_specs(version)
    names = [s.name for s in specs]
    rows = (
        predictions_in(version, start, end, where)
        .values_list(
            "id",
            "scored_at",
            "risk",
            "tier",
            "unit",
            "patient_id",
            "encounter_id",
            "encounter__outcome__outcome",
            "features",
        )  # fmt: skip
        .iterator(chunk_size=chunk_size)
    )
    data = WindowData(names=names, missing=np.zeros(len(names), dtype=np.int64))
    data.risk_histogram = np.zeros(RISK_HISTOGRAM_BINS, dtype=np.int64)
    sample_priority = np.empty(0, dtype=np.uint64)
    sample_values = np.empty((0, len(names) + len(EXTRA_COLUMNS)), dtype=np.float64)
    patient_days: dict[str, set] = {}
    tz = hospital_time_zone()
    while chunk := list(itertools.islice(rows, chunk_size)):
        frame = pd.DataFrame.from_records(chunk, columns=_STREAMED_COLUMNS)
        documents = frame["features"].tolist()
        values = np.column_stack(
            [encode_column([d.get(s.name) for d in documents], s) for s in specs]
            + [frame["risk"].to_numpy(dtype=np.float64)]
            + [frame["encounter"].to_numpy(dtype=np.float64, na_value=np.nan)]
            + [_epoch_seconds(frame["scored_at"])]
        )
        data.n += len(frame)
        data.missing += np.isnan(values[:, : len(names)]).sum(axis=0)
        labels = _bucket_labels(frame["scored_at"], bucket)
        _add_risk_and_tiers(data, frame, values[:, len(names)], labels, risk_edges)
        _add_patient_days(patient_days, frame, tz)
        _add_encounters(data, frame, labels)
        # Bottom-k merge: the sample of the rows so far is the k smallest priorities.
        sample_priority = np.concatenate([sample_priority, _priority(frame["id"].to_numpy())])
        sample_values = np.vstack([sample_values, values])
        if len(sample_priority) > sample_size:
            keep = np.argpartition(sample_priority, sample_size)[:sample_size]
            sample_priority, sample_values = sample_priority[keep], sample_values[keep]
    data.sample = pd.DataFrame(sample_values, columns=[*names, *EXTRA_COLUMNS])
    data.patient_days = {unit: len(days) for unit, days in patient_days.items()}
    return data


# --- attribution ---------------------------------------------------------------------------------
