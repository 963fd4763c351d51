"""The shape of a posted prediction (CONTRACT.md section 2), checked by pydantic.

Shape only: whether a feature exists, has the right unit, kind and range, or leaks information
from after the decision point depends on the model version and is checked in
services.validation. Every type is strict: a string is never taken for a number, nor a number or
true for a string.

Why pydantic and not a DRF serializer: a bulk request carries up to 10,000 predictions of about
25 feature entries each. DRF's fields cost about 200 us per prediction on this project's machine,
pydantic's compiled validators into plain dicts (TypedDicts) about 40 us; under load that
difference was the largest single cost of ingest. The OpenAPI schema is generated from the same
types (`request_schema`), so the documented shape and the checked one cannot drift apart.
"""

import math
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal, NotRequired

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import URLValidator
from django.utils import timezone
from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    with_config,
)
from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import PydanticCustomError
from typing_extensions import TypedDict

from common.timestamps import TimestampError, aware_timestamp


def _text(max_length: int, *, blank: bool = False, strip: bool = True) -> Any:
    """A string of at most `max_length` characters, trimmed (as DRF's CharField did)."""
    return Annotated[
        StrictStr,
        StringConstraints(strip_whitespace=strip, min_length=0 if blank else 1, max_length=max_length),
    ]


def _aware(text: str) -> datetime:
    try:
        return aware_timestamp(text)
    except TimestampError as exc:
        code = "naive_timestamp" if exc.code == "naive" else "timestamp"
        raise PydanticCustomError(code, str(exc)) from None


AwareTimestamp = Annotated[
    StrictStr,
    AfterValidator(_aware),
    WithJsonSchema({"type": "string", "format": "date-time", "example": "2026-11-22T10:32:00Z"}),
]


def _not_future(value: datetime) -> datetime:
    # A score from the future is a clock or integration fault; its leakage check would be void.
    ahead = settings.SCORED_AT_MAX_FUTURE_SECONDS
    if value > timezone.now() + timedelta(seconds=ahead):
        raise PydanticCustomError(
            "future_timestamp",
            "scored_at is in the future (more than {ahead} s ahead of this server's clock); "
            "check the scoring service's clock.",
            {"ahead": ahead},
        )
    return value


def _feature_value(value: Any) -> Any:
    if isinstance(value, dict | list):
        raise PydanticCustomError(
            "feature_value", "A feature value is a number, true/false, a category or null."
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise PydanticCustomError("feature_value", "A feature value must be a finite number.")
    return value


FeatureValue = Annotated[
    Any,
    AfterValidator(_feature_value),
    WithJsonSchema(
        {
            "oneOf": [{"type": "number"}, {"type": "boolean"}, {"type": "string"}],
            "nullable": True,
            "description": "A number, true/false, a category, or null for not measured.",
        }
    ),
]

_url = URLValidator()


def _url_check(text: str) -> str:
    if not text:
        return text
    try:
        _url(text)
    except DjangoValidationError:
        raise PydanticCustomError("url", "Not a valid URL.") from None
    return text


def _source_clean(source: dict) -> dict:
    # "" is the same as leaving the key out.
    return {key: text for key, text in source.items() if text}


@with_config(ConfigDict(extra="ignore"))
class Source(TypedDict, total=False):
    """Where a value came from, so a clinician can open it."""

    system: _text(50, blank=True, strip=False) | None
    reference: _text(300, blank=True, strip=False) | None
    url: Annotated[StrictStr, StringConstraints(max_length=1000), AfterValidator(_url_check)] | None


@with_config(ConfigDict(extra="ignore"))
class FeatureEntry(TypedDict, total=False):
    value: FeatureValue
    unit: _text(50, blank=True, strip=False) | None
    observed_at: AwareTimestamp | None
    source: Annotated[Source, AfterValidator(_source_clean)] | None


def _birth_date(text: str) -> date:
    try:
        born = date.fromisoformat(text)
    except ValueError:
        raise PydanticCustomError("birth_date", "A birth date is YYYY-MM-DD.") from None
    if born > timezone.now().date():
        raise PydanticCustomError("birth_date", "The birth date is in the future.")
    return born


BirthDate = Annotated[
    StrictStr,
    StringConstraints(pattern=r"^\d{4}-\d{2}-\d{2}$"),
    AfterValidator(_birth_date),
    WithJsonSchema({"type": "string", "format": "date", "example": "1958-03-14"}),
]
# FHIR administrative gender (http://hl7.org/fhir/administrative-gender).
Sex = Literal["male", "female", "other", "unknown"]


@with_config(ConfigDict(extra="ignore"))
class Patient(TypedDict):
    id: _text(100)
    display_name: NotRequired[_text(200, blank=True)]
    unit: _text(50)
    bed: NotRequired[_text(50, blank=True)]
    # Demographics for subgroup monitoring only (CONTRACT section 2): never on the worklist,
    # pseudonymised in exports. race and ethnicity: a code (e.g. CDC race 2106-3) or text.
    sex: NotRequired[Sex | None]
    birth_date: NotRequired[BirthDate | None]
    age: NotRequired[Annotated[StrictInt, Field(ge=0, le=130)] | None]
    race: NotRequired[_text(100) | None]
    ethnicity: NotRequired[_text(100) | None]


DEMOGRAPHICS = ("sex", "birth_date", "age", "race", "ethnicity")


Slug = Annotated[
    StrictStr,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100, pattern=r"^[-a-zA-Z0-9_]+$"),
]


@with_config(ConfigDict(extra="ignore"))
class PredictionIn(TypedDict):
    external_id: _text(200)
    model: Slug
    model_version: NotRequired[Annotated[StrictInt, Field(ge=1)] | None]
    patient: Patient
    # Required (CONTRACT section 2): a prediction without it could never meet its outcome.
    encounter_id: _text(100)
    scored_at: Annotated[AwareTimestamp, AfterValidator(_not_future)]
    risk: NotRequired[Annotated[StrictFloat, Field(ge=0.0, le=1.0)] | None]
    # name -> {"value", "unit", "observed_at", "source"}, or null for "not measured".
    features: dict[str, FeatureEntry | None]


_PREDICTION = TypeAdapter(PredictionIn)


def field_errors(exc: ValidationError) -> dict[str, list[str]]:
    """pydantic's errors as the contract's fields: {"features.lactate.value": ["..."]}."""
    fields: dict[str, list[str]] = {}
    for error in exc.errors(include_url=False, include_input=False):
        name = ".".join(str(part) for part in error["loc"]) or "body"
        fields.setdefault(name, []).append(error["msg"])
    return fields


def prediction_shape_check(payload: Any) -> tuple[dict | None, dict[str, list[str]]]:
    """(the payload as checked plain dicts, {}) or (None, messages per field).

    Timestamps come back as UTC datetimes, strings trimmed, a patient's display_name and bed
    default to "", and a source keeps only the keys it gives."""
    try:
        data = _PREDICTION.validate_python(payload)
    except ValidationError as exc:
        return None, field_errors(exc)
    patient = data["patient"]
    if patient.get("birth_date") is not None and patient.get("age") is not None:
        return None, {"patient.age": ["Give birth_date or age, not both."]}
    patient.setdefault("display_name", "")
    patient.setdefault("bed", "")
    return data, {}


class _OpenApi30(GenerateJsonSchema):
    """pydantic writes JSON Schema 2020-12; the API's schema is OpenAPI 3.0, which says
    `nullable: true` where 2020-12 says `anyOf: [..., {"type": "null"}]`."""

    def nullable_schema(self, schema):
        inner = self.generate_inner(schema["schema"])
        if "$ref" in inner:
            return {"allOf": [inner], "nullable": True}
        return {**inner, "nullable": True}


def _inline(node: Any, definitions: dict) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            return _inline(definitions[node["$ref"].rsplit("/", 1)[-1]], definitions)
        return {key: _inline(value, definitions) for key, value in node.items()}
    if isinstance(node, list):
        return [_inline(value, definitions) for value in node]
    return node


def prediction_request_schema() -> dict:
    """The OpenAPI 3.0 schema of a prediction body, from the types above."""
    schema = _PREDICTION.json_schema(schema_generator=_OpenApi30, ref_template="#/$defs/{model}")
    return _inline(schema, schema.pop("$defs", {}))
