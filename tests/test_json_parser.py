"""The strict JSON parser: what Python's json module lets through and PostgreSQL or the parser
itself cannot take is refused with its reason; everything else parses as json.loads does."""

import json

import pytest

from sightline.parsers import MAX_DEPTH, strict_loads


def nested(levels: int, inner: str = "1") -> str:
    return "[" * levels + inner + "]" * levels


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (nested(MAX_DEPTH + 1), "nested deeper"),
        (nested(MAX_DEPTH + 1, '"\\u00e9"'), "nested deeper"),
        ('{"a": ' * (MAX_DEPTH + 1) + "1" + "}" * (MAX_DEPTH + 1), "nested deeper"),
        ('{"note": "x\\u0000y"}', "NUL"),
        ('{"k\\u0000": 1}', "NUL"),
        ('["\\ud800"]', "unpaired surrogate"),
        ('["\\uDC00 alone"]', "unpaired surrogate"),
        ("[NaN]", "not a JSON number"),
        ('{"v": -Infinity}', "not a JSON number"),
    ],
)
def test_refused_with_the_reason(text, reason):
    with pytest.raises(ValueError, match=reason):
        strict_loads(text)


@pytest.mark.parametrize(
    "text",
    [
        nested(MAX_DEPTH),
        json.dumps({"note": "[[[[" * 40 + '"quoted" \\ {{{{' * 40}),
        '["\\\\u0000 is text, not a NUL"]',
        '["\\ud83d\\ude00 a surrogate pair"]',
        json.dumps([{"value": 4.2, "unit": "mmol/L", "source": {"system": "lab"}}] * 100),
    ],
)
def test_accepted_as_json_loads_reads_it(text):
    assert strict_loads(text) == json.loads(text)
