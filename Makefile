# The two commands a new user types: `make demo` and `make test`. Both set up .venv on their own.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PYTHONPATH := $(CURDIR)
export DEMO_DIR ?= $(CURDIR)/.demo

.PHONY: setup demo test test-fast acceptance browser-test migrate rotate-key dev lint bench up down workers workers-down

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

## make test-fast: the unit tests only (no Postgres, sandbox or Dagster instance needed), in under a minute.
test-fast: setup
	$(PY) -m pytest -p no:cacheprovider -m unit -q

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

## make rotate-key: re-encrypt every stored secret with the first key of SYNC_SECRET_KEY ("new,old"), so the
## old key can then be dropped (docs/security.md, "Keys").
rotate-key: setup
	$(PY) -m scripts.rotate_key

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
## Then the op concurrency pools (docs/dagster.md, "Pools"): dagster.yaml can only set a default limit.
WAREHOUSE_POOL_LIMIT ?= 10
GOOGLE_DRIVE_POOL_LIMIT ?= 4
up: setup
	$(PY) -m scripts.stack up
	DAGSTER_HOME=$${DAGSTER_HOME:-$${RUN_DIR:-$(CURDIR)/.run}/dagster_home} $(VENV)/bin/dagster instance concurrency set warehouse $(WAREHOUSE_POOL_LIMIT)
	DAGSTER_HOME=$${DAGSTER_HOME:-$${RUN_DIR:-$(CURDIR)/.run}/dagster_home} $(VENV)/bin/dagster instance concurrency set google_drive $(GOOGLE_DRIVE_POOL_LIMIT)

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
