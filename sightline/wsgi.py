import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

from sightline.gc_tuning import serving_gc_setup

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sightline.settings")
application = get_wsgi_application()

# Import every view module now rather than on the first request, then move everything loaded at
# start-up out of the garbage collector's view: full collections of a heap holding pandas, shap
# and numba otherwise stall requests (seen in bench/worklist.py's p95).
get_resolver().url_patterns  # noqa: B018 - the import is the point
serving_gc_setup()
