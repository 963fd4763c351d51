"""PostgreSQL unreachable: the API answers 503 JSON `service_unavailable` with Retry-After, never an
HTML 500 or a stack trace. A real outage: the server process is pointed at a port nothing listens on
(explanations/tests/test_operations.py covers a failure raised inside the ingest service)."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# An ES384 JWT naming an issuer (not validly signed: the database is down before that matters).
CDS_JWT = "eyJhbGciOiJFUzM4NCIsImtpZCI6ImsifQ.eyJpc3MiOiJodHRwczovL2Voci5leGFtcGxlL2ZoaXIifQ.c2ln"

REQUESTS = [
    ("post", "/api/v1/predictions/", {"external_id": "x"}, "Token abc"),
    ("post", "/api/v1/predictions/bulk/", [{"external_id": "x"}], "Token abc"),
    ("post", "/api/v1/outcomes/", {"encounter_id": "E-1", "outcome": True}, "Token abc"),
    ("get", "/api/v1/predictions/1/explanation/", None, "Token abc"),
    ("post", "/fhir/", {"resourceType": "Bundle", "type": "transaction", "entry": []}, "Token abc"),
    # A signed-in person's session is looked up in the database too.
    ("get", "/api/v1/exports/overrides/?from=2026-01-01&to=2026-02-01", None, ""),
    ("post", "/api/v1/alerts/1/actions/", {"action": "acknowledge", "reason": "reviewing"}, ""),
    # A CDS Hooks call: its JWT's issuer is looked up among the registered EHRs.
    ("post", "/cds-services/icu-mortality-30d", {"hook": "patient-view"}, f"Bearer {CDS_JWT}"),
]

SCRIPT = """
import json, sys
from django.test import Client
client = Client()
client.cookies["sessionid"] = "s" * 32
out = []
for method, path, body, auth in json.loads(sys.argv[1]):
    kwargs = {"HTTP_AUTHORIZATION": auth} if auth else {}
    if method == "post":
        response = client.post(path, json.dumps(body), content_type="application/json", **kwargs)
    else:
        response = client.get(path, **kwargs)
    out.append({
        "path": path,
        "status": response.status_code,
        "content_type": response["Content-Type"],
        "retry_after": response.get("Retry-After"),
        "body": response.content.decode(errors="replace"),
    })
print("RESULT " + json.dumps(out))
"""


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # released on close: nothing listens there


def test_an_unreachable_database_answers_503_json():
    env = dict(os.environ)
    env["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:{closed_port()}/sightline"
    code = SCRIPT.replace("sys.argv[1]", repr(json.dumps(REQUESTS)))
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))
    answers = json.loads(line.removeprefix("RESULT "))
    assert [a["path"] for a in answers] == [path for _, path, _, _ in REQUESTS]
    assert len(answers) == 8
    for answer in answers:
        assert answer["status"] == 503, answer
        assert answer["content_type"] == "application/json", answer
        assert answer["retry_after"] == "30", answer
        body = json.loads(answer["body"])
        assert body["error"] == "service_unavailable"
        assert "Retry" in body["detail"]
        assert "Traceback" not in answer["body"] and "psycopg" not in answer["body"]
