"""The spec checks of cds_spec.py catch what they are for (so that a passing card means something)."""

import pytest

from .cds_spec import card_problems, discovery_problems

GOOD = {
    "uuid": "5b0f7c1e-8d1b-4c55-9a57-3c0f5e3d2a61",
    "summary": "High risk 71%",
    "indicator": "critical",
    "source": {"label": "Sightline", "url": "https://sightline.example/models/m/versions/1/"},
    "links": [{"label": "Open", "url": "https://sightline.example/smart/launch", "type": "smart"}],
    "overrideReasons": [{"code": "already_aware", "system": "https://s/x", "display": "Already aware"}],
}

LINK = GOOD["links"][0]
SELECTION_NEEDED = "required (at-most-one or any) when there are suggestions"
DISPLAY = "required for an override reason"


def test_a_good_card_passes():
    assert card_problems(GOOD) == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"summary": "x" * 140}, "summary: 140 characters, must be under 140"),
        ({"indicator": "hard-stop"}, "indicator: 'hard-stop' is not info, warning or critical"),
        ({"source": {"url": "https://x/"}}, "source.label: required"),
        ({"links": [LINK | {"url": "/smart/launch"}]}, "links[0].url: must be an absolute URL"),
        ({"links": [LINK | {"type": "app"}]}, "links[0].type: 'app' is not absolute or smart"),
        ({"suggestions": [{"label": "Order"}]}, f"selectionBehavior: {SELECTION_NEEDED}"),
        ({"overrideReasons": [{"code": "x", "system": "s"}]}, f"overrideReasons[0].display: {DISPLAY}"),
        ({"uuid": "card-1"}, "uuid: not a UUID"),
    ],
)
def test_each_fault_is_caught(change, problem):
    assert card_problems(GOOD | change) == [problem]


def test_suggestions_with_selection_behavior_pass():
    assert (
        card_problems(GOOD | {"suggestions": [{"label": "Order"}], "selectionBehavior": "at-most-one"}) == []
    )


def test_discovery_checks():
    good = {
        "services": [{"id": "m", "hook": "patient-view", "description": "d", "prefetch": {"p": "Patient/1"}}]
    }
    assert discovery_problems(good) == []
    assert discovery_problems({"services": [{"id": "m", "hook": "patient-view"}]}) == [
        "services[0].description: required"
    ]
