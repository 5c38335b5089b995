# The two commands a new user types: `make demo` and `make test`. Both set up .venv on their own.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PYTHONPATH := $(CURDIR)
export DEMO_DIR ?= $(CURDIR)/.demo

.PHONY: setup demo test acceptance browser-test migrate dev lint bench up down workers workers-down

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

## make demo: full then (on later runs) incremental sync of a demo workspace on SQLite + the sandbox.
demo: setup
	$(PY) -m scripts.demo

## make test: the whole suite against the local Postgres (127.0.0.1:5432, user postgres), the seed's
## acceptance tests (tests/acceptance) included.
test: setup
	$(PY) -m scripts.check_postgres
	$(PY) -m pytest -p no:cacheprovider

## make browser-test: the Dagster UI (and the API's /docs) checked in headless Chromium; screenshots in .run/screenshots/.
browser-test: setup
	$(PY) -m scripts.check_postgres
	$(PY) -m pytest -p no:cacheprovider tests/e2e/test_browser.py

## make acceptance: the seed's test plan (tests/acceptance/, one test per ID) on the production-like stack;
## writes docs/test-execution-log.md. `make test` runs the same tests (with the rest) without writing the log.
acceptance: setup
	$(PY) -m scripts.check_postgres
	ACCEPTANCE_LOG=docs/test-execution-log.md $(PY) -m pytest -p no:cacheprovider tests/acceptance

## make migrate: apply Alembic migrations to WAREHOUSE_URL (default: the demo's SQLite).
migrate: setup
	$(PY) -m scripts.migrate

## make dev: webserver + daemon + sandbox in the foreground on the embedded instance.
dev: setup
	$(PY) -m scripts.stack dev

## make bench: every benchmark in bench/ in quick settings (under 15 min), one table; writes bench/results.json.
bench: setup $(VENV)/.bench-installed
	$(PY) bench/run_all.py

$(VENV)/.bench-installed: pyproject.toml
	$(PY) -m pip install --quiet -e ".[dev,bench]"
	@touch $@

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

## make up / make down: the production-like stack in the background (needs DAGSTER_PG_URL, WAREHOUSE_URL, SYNC_SECRET_KEY).
up: setup
	$(PY) -m scripts.stack up

down:
	$(PY) -m scripts.stack down

## make workers N=2: N Celery workers for sync_workspace steps (needs SYNC_EXECUTOR=celery on the stack, RabbitMQ,
## and the `make up` variables). Foreground, Ctrl-C stops them; DETACH=1 leaves them running (make workers-down).
N ?= 2
CONCURRENCY ?= 1
workers: setup
	$(PY) -m scripts.workers up --count $(N) --concurrency $(CONCURRENCY) $(if $(DETACH),--detach)

workers-down:
	$(PY) -m scripts.workers down
