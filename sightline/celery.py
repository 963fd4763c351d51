import os

from celery import Celery

from sightline.queues import now_queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sightline.settings")

app = Celery("sightline")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

LONE_TASKS = frozenset({"explanations.tasks.explanation_compute_task"})


def route_lone_tasks(name, args, kwargs, options, task=None, **kw):
    """A lone prediction's task goes to the queue read first, named after the default queue at the
    moment of sending (a test or a benchmark gives each run a queue of its own)."""
    if name in LONE_TASKS:
        return {"queue": now_queue(app.conf.task_default_queue)}
    return None
