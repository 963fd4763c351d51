"""The numerical core: plain functions over numpy and pandas. No Django, no Celery."""
