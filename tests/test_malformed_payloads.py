"""A table of malformed prediction payloads: each gets a documented 4xx JSON error and stores nothing.

Issue 7: wrong types, NaN/Infinity, huge numbers, empty and huge strings, unicode, timestamps
without zone or far in the future, 10 MB bodies, deeply nested JSON, wrong content type.
"""

import copy
import json

import pytest

from explanations.models import Explanation
from patients.models import Alert, Encounter, Patient, Prediction

# (case id, how to break a valid payload, expected status)
# A "mutator" takes a deep copy of a valid payload and returns the body to send: a dict/list is
# sent as JSON; a str is sent as-is (raw JSON text).


def drop(*path):
    def mutate(p):
        target = p
        for key in path[:-1]:
            target = target[key]
        target.pop(path[-1], None)
        return p

    return mutate


def put(value, *path):
    def mutate(p):
        target = p
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = copy.deepcopy(value)
        return p

    return mutate


def raw(text_from_payload):
    return text_from_payload


def first_numeric(p) -> str:
    for name in ("creatinine", "sodium", "heart_rate", "ph"):
        if name in p["features"]:
            return name
    return next(iter(p["features"]))


def feature(field, value):
    def mutate(p):
        name = first_numeric(p)
        p["features"][name] = dict(p["features"][name] or {})
        p["features"][name][field] = copy.deepcopy(value)
        return p

    return mutate


def feature_whole(value):
    def mutate(p):
        p["features"][first_numeric(p)] = copy.deepcopy(value)
        return p

    return mutate


def text_with(replace_from: str, replace_to: str):
    def mutate(p):
        return json.dumps(p).replace(replace_from, replace_to, 1)

    return mutate


HUGE = "x" * 100_000
DEEP = "[" * 100_000 + "]" * 100_000
DEEP_OBJECT = '{"a":' * 5_000 + "1" + "}" * 5_000

CASES = [
    # the body as a whole
    ("empty body", lambda p: "", 400),
    ("not json", lambda p: "{not json", 400),
    ("truncated json", lambda p: json.dumps(p)[:-10], 400),
    ("json null", lambda p: "null", 400),
    ("json string", lambda p: '"a prediction"', 400),
    ("json number", lambda p: "42", 400),
    ("json true", lambda p: "true", 400),
    ("json list to the single endpoint", lambda p: [p], 400),
    ("empty object", lambda p: {}, 400),
    ("deeply nested list", lambda p: DEEP, 400),
    ("deeply nested object", lambda p: DEEP_OBJECT, 400),
    ("nested junk in the body", put({"a": [{"b": [{"c": [1]}]}]}, "patient"), 400),
    ("NUL byte in text", put("P-\u0000-1", "patient", "id"), 400),
    ("lone surrogate", text_with('"patient": {"id": "', '"patient": {"id": "\\ud800'), 400),
    ("trailing garbage", lambda p: json.dumps(p) + " trailing", 400),
    # external_id
    ("external_id missing", drop("external_id"), 400),
    ("external_id empty", put("", "external_id"), 400),
    ("external_id blank", put("   ", "external_id"), 400),
    ("external_id huge", put(HUGE, "external_id"), 400),
    ("external_id number", put(12345, "external_id"), 400),
    ("external_id list", put(["a"], "external_id"), 400),
    ("external_id object", put({"a": 1}, "external_id"), 400),
    ("external_id null", put(None, "external_id"), 400),
    # model and version
    ("model missing", drop("model"), 400),
    ("model empty", put("", "model"), 400),
    ("model unknown", put("no-such-model", "model"), 400),
    ("model number", put(7, "model"), 400),
    ("model list", put(["icu"], "model"), 400),
    ("model huge", put(HUGE, "model"), 400),
    ("model_version string", put("three", "model_version"), 400),
    ("model_version negative", put(-1, "model_version"), 400),
    ("model_version zero", put(0, "model_version"), 400),
    ("model_version fraction", put(1.5, "model_version"), 400),
    ("model_version huge", put(10**30, "model_version"), 400),
    ("model_version unknown", put(999, "model_version"), 400),
    ("model_version list", put([1], "model_version"), 400),
    # patient
    ("patient missing", drop("patient"), 400),
    ("patient null", put(None, "patient"), 400),
    ("patient string", put("P-001", "patient"), 400),
    ("patient list", put(["P-001"], "patient"), 400),
    ("patient id missing", drop("patient", "id"), 400),
    ("patient id empty", put("", "patient", "id"), 400),
    ("patient id huge", put(HUGE, "patient", "id"), 400),
    ("patient id number object", put({"x": 1}, "patient", "id"), 400),
    ("patient unit missing", drop("patient", "unit"), 400),
    ("patient unit empty", put("", "patient", "unit"), 400),
    ("patient unit huge", put(HUGE, "patient", "unit"), 400),
    ("patient unit list", put(["MICU"], "patient", "unit"), 400),
    ("patient display_name huge", put(HUGE, "patient", "display_name"), 400),
    ("patient display_name object", put({"first": "x"}, "patient", "display_name"), 400),
    ("patient bed huge", put(HUGE, "patient", "bed"), 400),
    ("patient bed list", put(["1"], "patient", "bed"), 400),
    # encounter
    ("encounter_id huge", put(HUGE, "encounter_id"), 400),
    ("encounter_id list", put(["E-1"], "encounter_id"), 400),
    ("encounter_id object", put({"id": "E"}, "encounter_id"), 400),
    # scored_at
    ("scored_at missing", drop("scored_at"), 400),
    ("scored_at null", put(None, "scored_at"), 400),
    ("scored_at without zone", put("2026-01-05T08:00:00", "scored_at"), 400),
    ("scored_at date only", put("2026-01-05", "scored_at"), 400),
    ("scored_at garbage", put("yesterday", "scored_at"), 400),
    ("scored_at empty", put("", "scored_at"), 400),
    ("scored_at number", put(1767600000, "scored_at"), 400),
    ("scored_at far future", put("2999-01-01T00:00:00Z", "scored_at"), 400),
    ("scored_at impossible date", put("2026-02-30T08:00:00Z", "scored_at"), 400),
    ("scored_at huge", put(HUGE, "scored_at"), 400),
    # risk
    ("risk string", put("0.7", "risk"), 400),
    ("risk NaN literal", text_with('"model":', '"risk": NaN, "model":'), 400),
    ("risk Infinity literal", text_with('"model":', '"risk": Infinity, "model":'), 400),
    ("risk -Infinity literal", text_with('"model":', '"risk": -Infinity, "model":'), 400),
    ("risk overflow to inf", text_with('"model":', '"risk": 1e999, "model":'), 400),
    ("risk above 1", put(1.5, "risk"), 400),
    ("risk negative", put(-0.1, "risk"), 400),
    ("risk huge", put(1e308, "risk"), 400),
    ("risk list", put([0.5], "risk"), 400),
    ("risk bool", put(True, "risk"), 400),
    ("risk wrong", put(0.123456, "risk"), 422),
    # features as a whole
    ("features null", put(None, "features"), 400),
    ("features list", put([1, 2], "features"), 400),
    ("features string", put("lactate=4", "features"), 400),
    ("features number", put(3, "features"), 400),
    ("unknown feature", put({"value": 1}, "features", "lactate_unknown"), 400),
    ("unknown feature huge name", put({"value": 1}, "features", HUGE[:5000]), 400),
    ("leakage feature with a value", put({"value": True}, "features", "rhc_day1"), 422),
    ("feature entry a number", feature_whole(4.2), 400),
    ("feature entry a list", feature_whole([4.2]), 400),
    ("feature entry a string", feature_whole("4.2"), 400),
    # feature value
    ("value string", feature("value", "high"), 400),
    ("value numeric string", feature("value", "1.5"), 400),
    ("value list", feature("value", [1.0]), 400),
    ("value object", feature("value", {"v": 1}), 400),
    ("value bool for numeric", feature("value", True), 400),
    ("value far above range", feature("value", 1e9), 400),
    ("value far below range", feature("value", -1e9), 400),
    ("value huge integer", feature("value", 10**400), 400),
    ("value NaN literal", text_with('"value": ', '"value": NaN, "x": '), 400),
    ("value Infinity literal", text_with('"value": ', '"value": Infinity, "x": '), 400),
    ("value empty string", feature("value", ""), 400),
    ("value unicode digits", feature("value", "٤٫٢"), 400),
    # feature unit, time and source
    ("unit wrong", feature("unit", "furlongs"), 400),
    ("unit number", feature("unit", 5), 400),
    ("unit huge", feature("unit", HUGE), 400),
    ("observed_at after scored_at", feature("observed_at", "2999-01-01T00:00:00Z"), 422),
    ("observed_at without zone", feature("observed_at", "2026-01-05T06:00:00"), 400),
    ("observed_at garbage", feature("observed_at", "this morning"), 400),
    ("observed_at number", feature("observed_at", 12), 400),
    ("source a string", feature("source", "LIS"), 400),
    ("source a list", feature("source", ["LIS"]), 400),
    ("source system number", feature("source", {"system": 5}), 400),
    ("source url not a url", feature("source", {"system": "LIS", "url": "not a url"}), 400),
    ("source url javascript", feature("source", {"system": "LIS", "url": "javascript:alert(1)"}), 400),
    ("source reference huge", feature("source", {"system": "LIS", "reference": HUGE}), 400),
]


@pytest.mark.django_db
def test_each_malformed_prediction_gets_a_json_error_and_stores_nothing(service_client, prediction_payload):
    # One test over the whole table (registering the model once), reporting every case that fails.
    problems = []
    for case, mutate, expected in CASES:
        body = mutate(prediction_payload(0))
        data = body if isinstance(body, str) else json.dumps(body)
        response = service_client.generic(
            "POST", "/api/v1/predictions/", data, content_type="application/json"
        )
        stored = {m.__name__: m.objects.count() for m in (Prediction, Explanation, Alert, Patient, Encounter)}
        try:
            error = response.json()
        except ValueError:
            error = {}
        if response.status_code != expected:
            problems.append(
                f"{case}: {response.status_code} (expected {expected}) {response.content[:200]!r}"
            )
        elif set(error) != {"error", "detail", "fields"} or not error["detail"]:
            problems.append(f"{case}: not the contract's error shape: {response.content[:200]!r}")
        if any(stored.values()):
            problems.append(f"{case}: stored {stored}")
            for model in (Alert, Explanation, Prediction, Encounter, Patient):
                model.objects.all().delete()
    assert not problems, "\n".join(problems)


def test_the_table_has_at_least_a_hundred_cases():
    assert len(CASES) >= 100


@pytest.mark.django_db
@pytest.mark.parametrize(
    "content_type,body",
    [
        ("text/plain", "{}"),
        ("application/xml", "<prediction/>"),
        ("application/x-www-form-urlencoded", "external_id=x"),
        ("multipart/form-data; boundary=xyz", "--xyz--"),
    ],
)
def test_wrong_content_type_is_415_json(service_client, content_type, body):
    response = service_client.generic("POST", "/api/v1/predictions/", body, content_type=content_type)
    assert response.status_code == 415
    assert response.json()["error"] == "unsupported_media_type"
    assert Prediction.objects.count() == 0


@pytest.mark.django_db
def test_ten_megabyte_body_is_413_json(service_client, prediction_payload):
    payload = prediction_payload(0)
    payload["patient"]["display_name"] = "x" * (10 * 1024 * 1024)
    response = service_client.post("/api/v1/predictions/", payload, format="json")
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    assert Prediction.objects.count() == 0
