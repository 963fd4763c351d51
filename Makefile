# The few verbs a newcomer needs. `make demo` and `make test` are the README's quick start.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
HOST ?= 127.0.0.1
PORT ?= 8000
# Tests always run on PostgreSQL and Redis (never the embedded SQLite default).
TEST_DATABASE_URL ?= $(or $(DATABASE_URL),postgres://postgres@127.0.0.1:5432/sightline)
TEST_REDIS_URL ?= $(or $(REDIS_URL),redis://127.0.0.1:6379/0)

.PHONY: venv demo serve test lint format bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

# Loads the RHC demo cohort, trains and registers the demo model, ingests a scoring run,
# computes the explanations, creates the demo users, then serves http://$(HOST):$(PORT).
# With REDIS_URL set a Celery worker computes the explanations; without it, tasks run in-process.
demo: venv
	$(PY) manage.py migrate --noinput
	@set -e; \
	if [ -n "$$REDIS_URL" ]; then \
	  $(VENV)/bin/celery -A sightline worker --beat --schedule var/celerybeat-schedule --concurrency 2 --loglevel warning & worker=$$!; \
	  trap 'kill $$worker 2>/dev/null' EXIT INT TERM; \
	fi; \
	$(PY) manage.py demo --url http://$(HOST):$(PORT); \
	$(PY) manage.py runserver --noreload $(HOST):$(PORT)

test: venv
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(VENV)/bin/pytest

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

format: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Benchmarks print figures; each uses a database and Redis db of its own (see bench/*.py).
bench: venv
	$(PY) bench/explain.py
	$(PY) bench/drift.py
	$(PY) bench/worklist.py
	$(PY) bench/load.py
	$(PY) bench/cds_hooks.py
	$(PY) bench/shap_engines.py
	$(PY) bench/worker_batches.py
	$(PY) bench/monitoring_view.py

clean:
	rm -rf var staticfiles tests/artifacts
