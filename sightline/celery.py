import os

from celery import Celery

from sightline.queues import later_queue, now_queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sightline.settings")

app = Celery("sightline")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

LONE_TASKS = frozenset({"explanations.tasks.explanation_compute_task"})
LATER_TASKS = frozenset(
    {"monitoring.tasks.monitoring_version_refresh", "monitoring.tasks.monitoring_refresh"}
)


def route_tasks(name, args, kwargs, options, task=None, **kw):
    """A lone prediction's task goes to the queue read first, a monitoring refresh to the one read
    last (sightline/queues.py), each named after the default queue at the moment of sending (a test
    or a benchmark gives each run a queue of its own)."""
    if name in LONE_TASKS:
        return {"queue": now_queue(app.conf.task_default_queue)}
    if name in LATER_TASKS:
        return {"queue": later_queue(app.conf.task_default_queue)}
    return None
