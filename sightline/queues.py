"""The Celery queue names, one rule for settings, the router, workers, tests and benchmarks.

Workers read three queues in a fixed order (the broker's "priority" order strategy): a message is
taken from a queue only when those before it are empty.

- `<default>.now`: a lone prediction's explanation (the hourly post, a sweep's single re-queue), so
  it is never held behind a backlog of batch messages (bulk ingest, a burst, the sweep);
- `<default>`: everything else (batches, the sweep, cohort jobs, a summary someone asked for);
- `<default>.later`: the monitoring dashboard's background refreshes, which nobody waits for: they
  run when no explanation is waiting, so a refresh of a large window never slows the explanations.
"""

NOW_SUFFIX = ".now"
LATER_SUFFIX = ".later"


def now_queue(default_queue: str) -> str:
    return f"{default_queue}{NOW_SUFFIX}"


def later_queue(default_queue: str) -> str:
    return f"{default_queue}{LATER_SUFFIX}"


def all_queues(default_queue: str) -> list[str]:
    """Every queue of a deployment, in the order workers read them."""
    return [now_queue(default_queue), default_queue, later_queue(default_queue)]


def worker_queues(default_queue: str) -> str:
    """A worker's `-Q` value: every queue, in the order they are read."""
    return ",".join(all_queues(default_queue))
