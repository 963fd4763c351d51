"""The Celery queue names, one rule for settings, the router, workers, tests and benchmarks.

A lone prediction's explanation (the hourly post, a sweep's single re-queue) goes to a queue of its
own that workers read before the default one, so it is never held behind a backlog of batch
messages (bulk ingest, a burst, the sweep).
"""

NOW_SUFFIX = ".now"


def now_queue(default_queue: str) -> str:
    return f"{default_queue}{NOW_SUFFIX}"


def worker_queues(default_queue: str) -> str:
    """A worker's `-Q` value: the lone-prediction queue first (read first), then the default."""
    return f"{now_queue(default_queue)},{default_queue}"
