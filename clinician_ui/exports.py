"""The outcome-study export (CONTRACT.md section 4): one row per clinician action on an alert.

Patients appear only as a keyed hash of their external id (HMAC-SHA256 with settings.PSEUDONYM_KEY,
truncated): stable within a study, not reversible without the key, never the name or the real id.
Rows stream from the database in chunks (QuerySet.iterator) into CSV text or Parquet row groups,
so an export of any size never sits whole in memory.

Window: acted_at in [from, to). A date-only `to` means the end of that day, so
from=2026-11-01&to=2026-11-30 is all of November.
"""

import csv
import hashlib
import hmac
import io
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import IO

from django.conf import settings
from django.db.models import Max, QuerySet
from django.utils.dateparse import parse_date, parse_datetime

from common.timestamps import iso_utc
from explanations.models import Explanation
from models_registry.models import ModelFeature
from patients.actions import reason_label
from patients.models import AlertAction

FORMATS = ("csv", "parquet")
PSEUDONYM_LENGTH = 16  # hex characters: 64 bits of the HMAC
TOP_FEATURES = 3

# Column name and its Parquet type name (pyarrow is imported only when Parquet is written).
COLUMNS: tuple[tuple[str, str], ...] = (
    ("action_id", "int64"),
    ("alert_id", "int64"),
    ("patient_pseudonym", "string"),
    # Demographics (CONTRACT section 2), pseudonymised like the patient id: "" when not recorded.
    ("patient_sex", "string"),
    ("patient_age", "string"),
    ("patient_race", "string"),
    ("patient_ethnicity", "string"),
    ("unit", "string"),
    ("model_name", "string"),
    ("model_version", "int64"),
    ("scored_at", "timestamp"),
    ("risk", "float64"),
    ("tier", "string"),
    ("top_features", "string"),
    ("action", "string"),
    ("reason", "string"),
    ("reason_label", "string"),
    ("comment", "string"),
    ("user_role", "string"),
    ("channel", "string"),
    ("shown_at", "timestamp"),
    ("acted_at", "timestamp"),
    ("seconds_to_decision", "float64"),
    ("outcome", "bool"),
    ("outcome_occurred_at", "timestamp"),
)
COLUMN_NAMES = tuple(name for name, _ in COLUMNS)


class ExportParamError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class ExportWindow:
    start: datetime
    end: datetime
    format: str

    @property
    def filename(self) -> str:
        return f"sightline-overrides_{self.start:%Y%m%dT%H%M}_{self.end:%Y%m%dT%H%M}.{self.format}"


def _parse_moment(field: str, raw: str | None, *, end_of_day: bool) -> datetime:
    if not raw:
        raise ExportParamError(field, "Required: an ISO-8601 date or datetime, e.g. 2026-11-01.")
    raw = raw.strip()
    try:
        # A bare date first: parse_datetime would read "2026-11-30" as its midnight.
        day = parse_date(raw)
        moment = None if day else parse_datetime(raw)
    except ValueError:
        moment, day = None, None
    if moment is None and day is None:
        raise ExportParamError(
            field, f"{raw!r} is not an ISO-8601 date or datetime (e.g. 2026-11-01 or 2026-11-01T08:00Z)."
        )
    if moment is None:
        moment = datetime.combine(day + timedelta(days=1) if end_of_day else day, time.min)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def export_window_parse(params: Mapping[str, str]) -> ExportWindow:
    """`from`, `to` and `format` from a query string or command line; ExportParamError names the field."""
    start = _parse_moment("from", params.get("from"), end_of_day=False)
    end = _parse_moment("to", params.get("to"), end_of_day=True)
    if end <= start:
        raise ExportParamError("to", "Must be later than `from`.")
    fmt = (params.get("format") or "csv").strip().lower()
    if fmt not in FORMATS:
        raise ExportParamError("format", f"{fmt!r} is not an export format; use csv or parquet.")
    return ExportWindow(start=start, end=end, format=fmt)


def patient_pseudonym(external_id: str, *, key: str | None = None) -> str:
    """HMAC-SHA256 of the patient's external id keyed with PSEUDONYM_KEY, truncated."""
    secret = (key if key is not None else settings.PSEUDONYM_KEY).encode()
    return hmac.new(secret, external_id.encode(), hashlib.sha256).hexdigest()[:PSEUDONYM_LENGTH]


def demographic_pseudonym(field: str, value: object, *, key: str | None = None) -> str:
    """A demographic as a keyed pseudonym (HMAC-SHA256 of "field:value" with PSEUDONYM_KEY,
    truncated): equal values of one field share a pseudonym, so an analyst can compare groups
    without reading them; "" when not recorded."""
    if value is None or value == "":
        return ""
    return patient_pseudonym(f"{field}:{value}", key=key)


def age_at(patient, moment) -> int | None:
    """Completed years at `moment` from the birth date, else the age the scoring service gave."""
    born = patient.birth_date
    if born is None:
        return patient.age
    on = moment.date()
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def _demographics(patient, scored_at) -> dict:
    return {
        "patient_sex": demographic_pseudonym("sex", patient.sex),
        "patient_age": demographic_pseudonym("age", age_at(patient, scored_at)),
        "patient_race": demographic_pseudonym("race", patient.race),
        "patient_ethnicity": demographic_pseudonym("ethnicity", patient.ethnicity),
    }


def top_features_text(contributions: list[dict], labels: Mapping[str, str], n: int = TOP_FEATURES) -> str:
    """The n largest contributions by |SHAP| as "Lactate (+0.42); Mean arterial pressure (+0.25)"."""
    ranked = sorted(contributions, key=lambda c: -abs(float(c["shap"])))[:n]
    return "; ".join(f"{labels.get(c['name'], c['name'])} ({float(c['shap']):+.2f})" for c in ranked)


def overrides_queryset(actions: QuerySet[AlertAction], window: ExportWindow) -> QuerySet[AlertAction]:
    """`actions` (already restricted by patients.access) in the window, oldest first, with
    everything a row needs joined in the same query."""
    return (
        actions.filter(acted_at__gte=window.start, acted_at__lt=window.end)
        .select_related(
            "alert__patient",
            "alert__prediction__model_version__registered_model",
            "alert__prediction__explanation",
            "alert__prediction__encounter__outcome",
        )
        .defer("alert__prediction__features")
        .order_by("acted_at", "id")
    )


@dataclass(frozen=True)
class ExportSnapshot:
    """What an export writes, fixed before its first row: the rows (`queryset`), the external ids
    of their patients and how many rows, for the audit record (patients.access.audit_list)."""

    queryset: QuerySet[AlertAction]
    patients: list[str]
    rows: int


def export_snapshot(queryset: QuerySet[AlertAction]) -> ExportSnapshot:
    """`queryset` up to its newest action now, so that an action recorded while the export streams
    is neither written nor missing from the audit record; with its patients and row count."""
    newest = queryset.order_by().aggregate(newest=Max("pk"))["newest"]
    if newest is None:
        return ExportSnapshot(queryset=queryset.none(), patients=[], rows=0)
    fixed = queryset.filter(pk__lte=newest)
    patients = fixed.order_by().values_list("alert__patient__external_id", flat=True).distinct()
    return ExportSnapshot(queryset=fixed, patients=sorted(patients), rows=fixed.count())


class _Labels:
    """Feature labels per model version, loaded once per version seen in the export."""

    def __init__(self) -> None:
        self._by_version: dict[int, dict[str, str]] = {}

    def __call__(self, version_id: int) -> dict[str, str]:
        if version_id not in self._by_version:
            self._by_version[version_id] = dict(
                ModelFeature.objects.filter(version_id=version_id).values_list("name", "label")
            )
        return self._by_version[version_id]


def export_row(record: AlertAction, labels: Mapping[str, str]) -> dict:
    alert = record.alert
    prediction = alert.prediction
    explanation = getattr(prediction, "explanation", None)
    encounter = prediction.encounter
    outcome = getattr(encounter, "outcome", None) if encounter is not None else None
    shown = ""
    if (
        explanation is not None
        and explanation.status == Explanation.Status.READY
        and explanation.contributions
    ):
        shown = top_features_text(explanation.contributions, labels)
    return {
        "action_id": record.pk,
        "alert_id": alert.pk,
        "patient_pseudonym": patient_pseudonym(alert.patient.external_id),
        **_demographics(alert.patient, prediction.scored_at),
        "unit": alert.unit,
        "model_name": prediction.model_version.registered_model.name,
        "model_version": prediction.model_version.version,
        "scored_at": prediction.scored_at,
        "risk": alert.risk,
        "tier": alert.tier,
        "top_features": shown,
        "action": record.action,
        "reason": record.reason,
        "reason_label": reason_label(record.action, record.reason),
        "comment": record.comment,
        "user_role": record.role,
        "channel": record.channel,
        "shown_at": record.shown_at,
        "acted_at": record.acted_at,
        "seconds_to_decision": record.seconds_to_decision,
        "outcome": outcome.outcome if outcome is not None else None,
        "outcome_occurred_at": outcome.occurred_at if outcome is not None else None,
    }


def export_chunks(queryset: QuerySet[AlertAction], *, chunk_size: int | None = None) -> Iterator[list[dict]]:
    """Rows in lists of at most chunk_size, fetched chunk by chunk from the database."""
    size = chunk_size or settings.EXPORT_CHUNK_SIZE
    labels = _Labels()
    chunk: list[dict] = []
    for record in queryset.iterator(chunk_size=size):
        chunk.append(export_row(record, labels(record.alert.prediction.model_version_id)))
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _csv_value(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float | int):
        return repr(value)
    return csv_text(str(value))


# A spreadsheet runs a cell that starts with one of these as a formula (OWASP, CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_text(text: str) -> str:
    """Text from outside (a clinician's comment, a unit posted by a scoring service) as a CSV cell
    a spreadsheet shows as text: a leading formula character is escaped with a single quote.
    Parquet keeps the value as written."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_stream(chunks: Iterable[list[dict]]) -> Iterator[str]:
    """The header, then one piece of CSV text per chunk of rows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMN_NAMES)
    yield buffer.getvalue()
    for chunk in chunks:
        buffer.seek(0)
        buffer.truncate()
        for row in chunk:
            writer.writerow([_csv_value(row[name]) for name in COLUMN_NAMES])
        yield buffer.getvalue()


def parquet_write(chunks: Iterable[list[dict]], sink: str | IO[bytes]) -> int:
    """Write the rows as Parquet, one row group per chunk; returns the number of rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    types = {
        "int64": pa.int64(),
        "string": pa.string(),
        "float64": pa.float64(),
        "bool": pa.bool_(),
        "timestamp": pa.timestamp("us", tz="UTC"),
    }
    schema = pa.schema([pa.field(name, types[kind]) for name, kind in COLUMNS])
    rows = 0
    with pq.ParquetWriter(sink, schema) as writer:
        for chunk in chunks:
            writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
            rows += len(chunk)
    return rows
