"""`manage.py demo` (what `make demo` runs before serving): loads, explains, and ends with a summary a
newcomer can act on; a second run creates nothing twice."""

import io
import re

import pytest
from django.core.management import call_command

from demo.models import DemoClock
from explanations.models import Explanation
from patients.models import Prediction

# Real commits: the explanations are queued after commit and computed in-process (tasks eager).
pytestmark = pytest.mark.django_db(transaction=True)


def _run(bundle_dir) -> str:
    out = io.StringIO()
    call_command(
        "demo", bundle_dir=bundle_dir, limit=12, url="http://ward-pc:8000", stdout=out, stderr=io.StringIO()
    )
    return out.getvalue()


def test_demo_ends_with_what_was_loaded_where_and_who_can_sign_in(model_store, demo_bundle_dir, monkeypatch):
    monkeypatch.setenv("DEMO_PASSWORD", "correct-horse-42")
    text = _run(demo_bundle_dir)

    summary = text[text.index("Sightline demo ready") :]
    assert "Open        http://ward-pc:8000/" in summary
    ready = Explanation.objects.filter(status=Explanation.Status.READY).count()
    assert Prediction.objects.count() == 12 and ready == 12
    patients = Prediction.objects.values("patient_id").distinct().count()
    assert f"Patients    {patients} from the RHC study (real day-1 values), 66 beds (MICU 24," in summary
    assert "Scores      12, 12 explained, 0 failed" in summary
    assert "Simulated   stays, beds, names, admission and observation times" in summary
    rows = re.findall(r"^    (\w+)\s+(\w+)\s+(\S+)\s+(.+)$", summary, re.M)
    assert rows == [
        ("role", "username", "password", "units"),
        ("clinician", "clinician", "correct-horse-42", "MICU, CCU"),
        ("admin", "admin", "correct-horse-42", "every unit"),
    ]
    assert "No hostname was supplied" not in text and "No directory at" not in text

    # The clock was stored on the first run: the second posts the same scores, and stores none.
    clock = DemoClock.objects.get().anchored_at
    again = _run(demo_bundle_dir)
    assert "0 predictions stored, 12 already there." in again
    assert Prediction.objects.count() == 12 and DemoClock.objects.get().anchored_at == clock
    assert f"census up to {clock:%Y-%m-%d %H:%M} UTC" in again
