from engine.burden import alert_burden


def test_overall_shares_add_up_over_units():
    groups = [
        {"unit": "MICU", "latest_action": None, "latest_reason": None, "n": 3},
        {"unit": "MICU", "latest_action": "dismiss", "latest_reason": "already_aware", "n": 1},
        {"unit": "CCU", "latest_action": "accept", "latest_reason": "treatment_changed", "n": 2},
        {"unit": "CCU", "latest_action": None, "latest_reason": None, "n": 2},
    ]
    burden = alert_burden({"MICU": 40, "CCU": 10}, groups, [30.0, 90.0])

    overall = burden["overall"]
    assert overall["alerts"] == 8
    assert overall["alerts_per_100_patient_days"] == 16.0
    assert overall["share_no_response"] == 5 / 8
    assert overall["share_acted_on"] == 2 / 8
    assert overall["share_overridden"] == 1 / 8
    assert burden["overrides_by_reason"] == {"already_aware": 1}
    micu = next(u for u in burden["units"] if u["unit"] == "MICU")
    assert micu["share_no_response"] == 3 / 4
