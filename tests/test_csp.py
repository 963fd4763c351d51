"""The Content-Security-Policy header (issue 15, finding 10) and its frame-ancestors setting."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_pages_carry_the_strict_policy(client, db):
    policy = client.get("/login/")["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";") if d.strip())
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'"
    assert directives["style-src"].startswith("'self' 'sha256-")
    assert "unsafe" not in policy
    assert directives["frame-ancestors"] == "'none'"
    assert directives["base-uri"] == "'none'" and directives["object-src"] == "'none'"


def test_frame_ancestors_come_from_the_environment():
    env = {**os.environ, "CSP_FRAME_ANCESTORS": "https://ehr.example.org, https://ehr2.example.org"}
    script = (
        "import django; django.setup(); from django.conf import settings; "
        "print(settings.CONTENT_SECURITY_POLICY['DIRECTIVES']['frame-ancestors'])"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "sightline.settings"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.strip() == "['https://ehr.example.org', 'https://ehr2.example.org']", result.stderr
