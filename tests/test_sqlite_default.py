"""The embedded SQLite default under concurrent writers (issue 15): two requests that each read and
then write in one transaction, as an ingest does, must wait for each other, never fail with
"database is locked" (which the API answers 503)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import threading, time
import django
django.setup()
from django.db import connection, transaction

with connection.cursor() as cursor:
    cursor.execute("CREATE TABLE IF NOT EXISTS raced (key TEXT UNIQUE)")
connection.close()
errors = []

def post(key):
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM raced WHERE key = %s", [key])
            cursor.fetchone()
            time.sleep(0.5)  # the other request reads meanwhile
            cursor.execute("INSERT INTO raced (key) VALUES (%s)", [key])
    except Exception as exc:
        errors.append(repr(exc))
    finally:
        connection.close()

threads = [threading.Thread(target=post, args=(k,)) for k in ("a", "b")]
for t in threads:
    t.start()
for t in threads:
    t.join()
with connection.cursor() as cursor:
    cursor.execute("SELECT count(*) FROM raced")
    print("rows", cursor.fetchone()[0], "errors", errors)
"""


def test_two_read_then_write_transactions_at_once_both_commit_on_sqlite(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in {"SIGHTLINE_PRODUCTION"}}
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    env["DJANGO_SETTINGS_MODULE"] = "sightline.settings"
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "rows 2 errors []"
