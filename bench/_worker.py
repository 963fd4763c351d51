"""The Celery worker bench/explain.py starts (a subprocess on the benchmark's own queues) and the
peak RSS of its processes, read from /proc (bench/_proc.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench._proc import _cpu_seconds, _hwm_mb, _tree
from bench._stack import ROOT
from sightline.queues import worker_queues


class Worker:
    """The benchmark's Celery worker (a subprocess on its own queue) and the peak RSS of its processes."""

    def __init__(self, *, concurrency: int, queue: str, task_time_limit: int) -> None:
        self.concurrency, self.queue = concurrency, queue
        self.env = {
            **os.environ,
            "DB_CONN_MAX_AGE": "60",
            "CELERY_TASK_SOFT_TIME_LIMIT": str(task_time_limit),
            "CELERY_TASK_TIME_LIMIT": str(task_time_limit + 60),
        }
        self.process: subprocess.Popen | None = None
        self.peaks: dict[int, float] = {}  # VmHWM of each of the worker's processes

    @property
    def pid(self) -> int:
        return self.process.pid

    def start(self) -> None:
        celery = Path(sys.executable).with_name("celery")
        self.process = subprocess.Popen(
            [str(celery), "-A", "sightline", "worker", "--pool=prefork", "-c", str(self.concurrency)]
            + [
                "-Q",
                worker_queues(self.queue),
                "--loglevel=WARNING",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def wait_ready(self, timeout: float = 120.0) -> float:
        """Wait until the worker answers a ping and its processes have gone idle (they loaded what
        they load at start); return the seconds that took. A job is timed on a running worker, as in
        service, not on one still starting."""
        from sightline.celery import app

        started = time.perf_counter()
        while not app.control.ping(timeout=0.5):
            if self.process.poll() is not None or time.perf_counter() - started > timeout:
                raise SystemExit("the worker did not start")
        before = self.cpu_seconds()
        while True:  # idle: its processes used under 20 ms of CPU in 0.5 s
            time.sleep(0.5)
            now = self.cpu_seconds()
            if now - before < 0.02 or time.perf_counter() - started > timeout:
                return time.perf_counter() - started
            before = now

    def cpu_seconds(self) -> float:
        return sum(_cpu_seconds(pid) for pid in _tree(self.pid))

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def stop_if_running(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.stop()

    def sample_rss(self) -> None:
        for pid in _tree(self.pid):
            self.peaks[pid] = max(self.peaks.get(pid, 0.0), _hwm_mb(pid))

    def rss_text(self) -> str:
        pool = "/".join(f"{mb:.0f}" for pid, mb in sorted(self.peaks.items()) if pid != self.pid)
        return f"pool processes {pool} MB, main process {self.peaks.get(self.pid, 0.0):.0f} MB"
