import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

ROOT = Path(__file__).resolve().parent.parent


def run_check(env_overrides: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    # DJANGO_ALLOW_ASYNC_UNSAFE is set by the browser tests (Playwright runs an event loop) and
    # is never set in a deployment.
    unset = {"SECRET_KEY", "ALLOWED_HOSTS", "DJANGO_ALLOW_ASYNC_UNSAFE", "PSEUDONYM_KEY"}
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env.update(env_overrides)
    return subprocess.run(
        [sys.executable, "manage.py", "check", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_refuses_to_start_without_secret_key():
    result = run_check({"SIGHTLINE_PRODUCTION": "1", "ALLOWED_HOSTS": "sightline.example.org"})
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_production_refuses_to_start_without_allowed_hosts():
    result = run_check({"SIGHTLINE_PRODUCTION": "1", "SECRET_KEY": "x" * 60})
    assert result.returncode != 0
    assert "ALLOWED_HOSTS must be set" in result.stderr


def test_secret_key_is_read_from_a_file(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("s" * 30 + "-file-secret-" + "k" * 30 + "\n")
    result = run_check(
        {
            "SIGHTLINE_PRODUCTION": "1",
            "SECRET_KEY_FILE": str(secret),
            "ALLOWED_HOSTS": "sightline.example.org",
            "PSEUDONYM_KEY": "p" * 50,
            "REDIS_URL": "redis://127.0.0.1:6379/9",
        },
        "--deploy",
        "--fail-level",
        "WARNING",
    )
    assert result.returncode == 0, result.stdout + result.stderr


PRODUCTION_BASE = {
    "SIGHTLINE_PRODUCTION": "1",
    "SECRET_KEY": "x" * 60,
    "ALLOWED_HOSTS": "sightline.example.org",
}


def test_production_refuses_to_start_without_its_own_pseudonym_key():
    """Pen test finding 11: without one, exports were keyed with a public development key (and in
    production silently with SECRET_KEY), and a pseudonym was reversed to its patient id."""
    result = run_check({**PRODUCTION_BASE, "REDIS_URL": "redis://127.0.0.1:6379/9"})
    assert result.returncode != 0 and "PSEUDONYM_KEY must be set" in result.stderr
    same = run_check({**PRODUCTION_BASE, "REDIS_URL": "redis://x", "PSEUDONYM_KEY": "x" * 60})
    assert same.returncode != 0 and "differ from SECRET_KEY" in same.stderr


def test_production_refuses_to_start_without_redis():
    """Pen test finding 8: without Redis the login throttle counted per process."""
    result = run_check({**PRODUCTION_BASE, "PSEUDONYM_KEY": "p" * 50, "REDIS_URL": ""})
    assert result.returncode != 0 and "REDIS_URL must be set" in result.stderr


def test_an_installation_generates_its_own_pseudonym_key_once():
    from django.conf import settings as live

    key_file = ROOT / "var" / "pseudonym.key"
    if "PSEUDONYM_KEY" not in os.environ:
        assert key_file.is_file() and (key_file.stat().st_mode & 0o777) == 0o600
        assert live.PSEUDONYM_KEY == key_file.read_text().strip() != live.SECRET_KEY
        assert len(live.PSEUDONYM_KEY) >= 40


def _key_when_started_together(path: str, barrier, keys) -> None:
    from sightline.settings_security import installation_key

    barrier.wait()
    keys.put(installation_key(Path(path)))


def test_processes_starting_together_read_one_pseudonym_key(tmp_path):
    """Created with O_EXCL, the key file made a process starting at the same moment as another
    fail (FileExistsError) or read it empty; now every process reads the one key made."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    path = tmp_path / "var" / "pseudonym.key"
    barrier, keys = context.Barrier(6), context.Queue()
    workers = [
        context.Process(target=_key_when_started_together, args=(str(path), barrier, keys)) for _ in range(6)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    assert [w.exitcode for w in workers] == [0] * 6
    made = path.read_text().strip()
    assert len(made) >= 40 and (path.stat().st_mode & 0o777) == 0o600
    assert [keys.get(timeout=5) for _ in workers] == [made] * 6


def test_a_key_file_being_written_is_waited_for_not_read_empty(tmp_path):
    from sightline.settings_security import installation_key

    path = tmp_path / "pseudonym.key"
    path.touch(mode=0o600)  # another process has created it and not yet written its key
    writer = threading.Timer(0.3, path.write_text, args=("k" * 43,))
    writer.start()
    assert installation_key(path) == "k" * 43
    writer.join()
    # A file left empty for good (a crash while writing) is an error saying what to do, not "".
    stuck = tmp_path / "stuck.key"
    stuck.touch()
    with pytest.raises(ImproperlyConfigured, match="stuck.key is empty: delete it"):
        installation_key(stuck, wait_seconds=0.2)
