"""Start and stop the real stack (PostgreSQL database, gunicorn, Celery worker) for a benchmark.

Loopback only; every process started here is stopped on exit. Each benchmark uses a database
and a Redis db of its own, recreated on every run, so it never touches the demo or the tests.
"""

import os
import signal
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import psycopg2
import redis

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def recreate_database(name: str, admin_url: str = "postgres://postgres@127.0.0.1:5432/postgres") -> str:
    connection = psycopg2.connect(admin_url)
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cursor.execute(f'CREATE DATABASE "{name}"')
    connection.close()
    return f"postgres://postgres@127.0.0.1:5432/{name}"


def bench_env(*, database: str, redis_db: int, store: Path, queue: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": recreate_database(database),
        "REDIS_URL": f"redis://127.0.0.1:6379/{redis_db}",
        "MODEL_STORE": str(store),
        "CELERY_QUEUE": queue,
        "LOG_LEVEL": "WARNING",
        "THROTTLE_SERVICE_RATE": "1000000/min",
        "THROTTLE_USER_RATE": "1000000/min",
    }
    redis.Redis.from_url(env["REDIS_URL"]).flushdb()
    return env


def manage(env: dict, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def demo_bundle(env: dict) -> Path:
    bundle = ROOT / "var" / "demo_bundle"
    if not (bundle / "bundle.yaml").exists():
        manage(env, "train_demo_model", str(bundle))
    return bundle


def _start(command: list[str], env: dict, log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def peak_rss_mb(process: subprocess.Popen) -> float:
    """Largest peak resident set (VmHWM) among the process and its children, in MB."""
    peak = 0
    pids = [process.pid]
    try:
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except OSError:
            continue
    return peak / 1024


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            out += [int(c) for c in task.read_text().split()]
        except OSError:
            continue
    return out


def cpu_seconds(root_pid: int) -> float:
    """CPU seconds (user + system) used so far by a process tree: the live processes' own time,
    plus what the processes already reaped (exited children, e.g. closed PostgreSQL backends)
    used, which the kernel adds to their parent's cutime/cstime."""
    tick = os.sysconf("SC_CLK_TCK")
    total, pending = 0, [root_pid]
    while pending:
        pid = pending.pop()
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields[11:15]: utime, stime, cutime, cstime (man 5 proc, counted after the ")").
        total += sum(int(v) for v in fields[11:15])
        pending += _children(pid)
    return total / tick


def postgres_pid() -> int | None:
    """The PostgreSQL postmaster on this machine (the parent of every backend), if readable."""
    for pidfile in Path("/var/run/postgresql").glob("*.pid"):
        try:
            return int(pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return None


def autogroup_nice(pid: int, nice: int) -> None:
    """Make a process's niceness count against the other processes of the machine.

    With the kernel's autogroup scheduling on (/proc/sys/kernel/sched_autogroup_enabled), CPU is
    first shared equally between sessions and niceness only counts inside a session, so a worker
    started `nice -n 10` in a session of its own still gets a whole session's share. Setting the
    session's (autogroup's) nice as well gives it the lower priority it was started with."""
    path = Path(f"/proc/{pid}/autogroup")
    if not path.exists():
        return
    try:
        path.write_text(str(nice))
    except OSError as exc:
        print(f"could not set the autogroup nice of {pid} ({exc}); its niceness may not count", flush=True)


def _refuse_if_port_taken(port: int) -> None:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/login/", timeout=2)  # noqa: S310
    except OSError:
        pass
    else:
        raise SystemExit(f"something already answers on port {port} (a run left behind?); stop it first")


def _start_web(env: dict, *, port: int, web_workers: int, log_dir: Path) -> subprocess.Popen:
    return _start(
        [
            str(VENV_BIN / "gunicorn"),
            "sightline.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(web_workers),
            "--timeout",
            "120",
            "--log-level",
            "warning",
        ],
        env,
        log_dir / "web.log",
    )


def _start_worker(
    env: dict, *, worker_concurrency: int, log_dir: Path, worker_nice: int, lone_only: bool = False
) -> subprocess.Popen:
    """The worker reading the lone-prediction queue first, then the default one; with `lone_only`,
    one reading only the lone-prediction queue (docker/compose.yaml's worker-now)."""
    from sightline.queues import now_queue, worker_queues  # the scripts put sys.path first

    queues = now_queue(env["CELERY_QUEUE"]) if lone_only else worker_queues(env["CELERY_QUEUE"])

    worker = _start(
        [
            *(["nice", "-n", str(worker_nice)] if worker_nice else []),
            str(VENV_BIN / "celery"),
            "-A",
            "sightline",
            "worker",
            "--pool=prefork",
            "-c",
            str(worker_concurrency),
            "-Q",
            queues,
            "-n",
            f"{'now' if lone_only else 'worker'}-{os.getpid()}@%h",
            "--loglevel=WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        env,
        log_dir / ("worker-now.log" if lone_only else "worker.log"),
    )
    if worker_nice:
        autogroup_nice(worker.pid, worker_nice)
    return worker


def _wait_for_web(web: subprocess.Popen, *, port: int, log_dir: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/login/", timeout=2)  # noqa: S310
            break
        except OSError:
            if time.monotonic() > deadline or web.poll() is not None:
                raise SystemExit(f"gunicorn did not start; see {log_dir / 'web.log'}") from None
            time.sleep(0.3)


@contextmanager
def stack(
    env: dict,
    *,
    port: int,
    web_workers: int,
    worker_concurrency: int,
    log_dir: Path,
    worker_nice: int = 0,
    lone_worker: bool = False,
):
    """(web, worker, lone worker or None), started; stopped on leaving."""
    log_dir.mkdir(parents=True, exist_ok=True)
    _refuse_if_port_taken(port)
    # A SIGTERM (e.g. from `timeout`) unwinds through the finally below, which stops what started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    web = _start_web(env, port=port, web_workers=web_workers, log_dir=log_dir)
    worker = _start_worker(
        env, worker_concurrency=worker_concurrency, log_dir=log_dir, worker_nice=worker_nice
    )
    lone = None
    if lone_worker:  # at the web's priority, as docker/compose.yaml runs it
        lone = _start_worker(env, worker_concurrency=1, log_dir=log_dir, worker_nice=0, lone_only=True)
    try:
        _wait_for_web(web, port=port, log_dir=log_dir)
        yield web, worker, lone
    finally:
        _stop(web)
        _stop(worker)
        if lone is not None:
            _stop(lone)
