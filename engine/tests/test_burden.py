from engine.burden import alert_burden
from engine.decisions import STATE_LABELS, percent_shares, state_after


def test_each_alert_counts_once_by_its_state_and_the_shares_add_up_over_units():
    groups = [
        {"unit": "MICU", "latest_action": None, "latest_reason": None, "n": 3},
        {"unit": "MICU", "latest_action": "dismiss", "latest_reason": "already_aware", "n": 1},
        {"unit": "CCU", "latest_action": "accept", "latest_reason": "treatment_changed", "n": 2},
        {"unit": "CCU", "latest_action": "escalate", "latest_reason": "senior_review", "n": 1},
        {"unit": "CCU", "latest_action": "acknowledge", "latest_reason": "reviewing", "n": 1},
        {"unit": "CCU", "latest_action": None, "latest_reason": None, "n": 2},
    ]
    burden = alert_burden({"MICU": 40, "CCU": 10}, groups, [30.0, 90.0])

    overall = burden["overall"]
    assert overall["alerts"] == 10
    assert overall["alerts_per_100_patient_days"] == 20.0
    assert overall["by_state"] == {"new": 5, "acknowledged": 1, "accepted": 2, "escalated": 1, "dismissed": 1}
    assert overall["share_by_state"]["new"] == 5 / 10
    assert overall["percent_by_state"] == {
        "new": 50.0, "acknowledged": 10.0, "accepted": 20.0, "escalated": 10.0, "dismissed": 10.0
    }  # fmt: skip
    assert burden["overrides_by_reason"] == {"already_aware": 1}
    assert burden["state_labels"]["new"] == "No response"
    micu = next(u for u in burden["units"] if u["unit"] == "MICU")
    assert micu["percent_by_state"]["new"] == 75.0 and micu["percent_by_state"]["dismissed"] == 25.0
    ccu = next(u for u in burden["units"] if u["unit"] == "CCU")
    # Thirds and sixths: the shown shares still add up to 100.0 exactly.
    assert round(sum(ccu["percent_by_state"].values()) * 10) == 1000
    assert ccu["percent_by_state"] == {
        "new": 33.3, "acknowledged": 16.7, "accepted": 33.3, "escalated": 16.7, "dismissed": 0.0
    }  # fmt: skip


def test_percent_shares_add_up_to_100_as_shown():
    for counts in ({"a": 1, "b": 1, "c": 1}, {"a": 2, "b": 0, "c": 5, "d": 3333}, {"x": 7, "y": 3, "z": 1}):
        shares = percent_shares(counts)
        assert round(sum(shares.values()) * 10) == 1000
        for key, n in counts.items():
            assert abs(shares[key] - 100 * n / sum(counts.values())) < 0.1
    assert percent_shares({"a": 0}) is None


def test_every_action_leads_to_a_state_of_its_own():
    states = {state_after(action) for action in ("acknowledge", "accept", "escalate", "dismiss", None)}
    assert states == set(STATE_LABELS)
