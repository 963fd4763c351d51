"""CPU time, threads and peak RSS of a process and its children, read from /proc (Linux)."""

from __future__ import annotations

import os
from pathlib import Path


def _tree(pid: int) -> list[int]:
    out = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        for child in task.read_text().split():
            out.extend(_tree(int(child)))
    return out


def _hwm_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


def _pool(pid: int) -> list[int]:
    return [p for p in _tree(pid) if p != pid]


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _threads(pid: int) -> tuple[int, float]:
    """(threads, CPU seconds of the threads other than the main one) of a process."""
    tasks = [int(t.name) for t in Path(f"/proc/{pid}/task").glob("*")]
    other = 0.0
    for tid in tasks:
        if tid != pid:
            try:
                fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
            except FileNotFoundError:
                continue
            other += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return len(tasks), other


def _usage(worker: int, cpu: dict, threads: dict) -> None:
    """Record each worker process's CPU seconds and each pool process's threads (kept after exit)."""
    for pid in _tree(worker):
        cpu[pid] = _cpu_seconds(pid)
    for pid in _pool(worker):
        threads[pid] = _threads(pid)
