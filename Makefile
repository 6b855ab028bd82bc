# The README's two commands: `make run` and `make test`. Both build .venv from nothing.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# The PostgreSQL run of `make test` uses DATABASE_URL when it is set, else the local server.
PG_URL := $(if $(DATABASE_URL),$(DATABASE_URL),postgres://postgres@127.0.0.1:5432/postgres)
PYTEST_ARGS ?=

# Clock shifts of the second SQLite run (libfaketime): far enough to expire every literal date a test
# might compare with today, both ways.
CLOCK_SHIFTS ?= +3650d -3650d

.PHONY: run test test-sqlite test-shifted-clock test-postgres lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.runtime-installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev-installed: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(VENV)/.runtime-installed $@

## make run: set up, migrate the SQLite default, create the admin once, load demo data, serve.
run: export DEBUG := true
run: $(VENV)/.runtime-installed
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py ensure_admin
	LOG_LEVEL=WARNING $(BIN)/python manage.py seed_demo
	@echo "Serving the admin on http://127.0.0.1:8000/admin/ (Ctrl-C stops it)"
	$(BIN)/python manage.py runserver 127.0.0.1:8000

## make test: set up, lint (ruff, mypy), check migrations, run the whole suite on SQLite (also with
## the clock shifted years ahead and back) and on PostgreSQL.
## The three SQLite runs share the two cores (each is one single-threaded process; --output-sync keeps
## each run's output in one piece); the PostgreSQL run, whose concurrency tests time their workers,
## runs alone after them.
test: export DEBUG := true
test: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/mypy
	env -u DATABASE_URL $(BIN)/python manage.py makemigrations --check --dry-run
	$(MAKE) --no-print-directory -j3 --output-sync=target test-sqlite $(addprefix test-clock,$(CLOCK_SHIFTS))
	$(MAKE) --no-print-directory test-postgres

test-sqlite: export DEBUG := true
test-sqlite: $(VENV)/.dev-installed
	@echo "=== pytest on SQLite ==="
	env -u DATABASE_URL $(BIN)/pytest $(PYTEST_ARGS)

## make test-shifted-clock: the SQLite suite once per CLOCK_SHIFTS entry (make test-clock+400d: one).
test-shifted-clock: $(addprefix test-clock,$(CLOCK_SHIFTS))

# The SQLite suite again under libfaketime (Debian's faketime; .ci/run installs it): the whole process,
# and every process it starts, sees the clock shifted by the target's suffix (test-clock+3650d). A test
# that leans on today's date fails here. FAKETIME_DONT_FAKE_MONOTONIC must stay unset: with it,
# libfaketime breaks time.sleep().
test-clock%: export DEBUG := true
test-clock%: $(VENV)/.dev-installed
	@if command -v faketime >/dev/null 2>&1; then \
		echo "=== pytest on SQLite, clock shifted $* ==="; \
		env -u DATABASE_URL -u FAKETIME_DONT_FAKE_MONOTONIC faketime -f "$*" \
			$(BIN)/pytest -p no:cacheprovider $(PYTEST_ARGS); \
	elif [ "$$CI" = "true" ]; then \
		echo "!!! faketime is not installed and CI=true: the shifted-clock run is mandatory. FAILING." >&2; \
		exit 1; \
	else \
		echo "" >&2; \
		echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!" >&2; \
		echo "!!! faketime is not installed: the clock-shifted ($*) test run was SKIPPED." >&2; \
		echo "!!! Install it (apt-get install faketime) to prove no test depends on today's date." >&2; \
		echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!" >&2; \
	fi

test-postgres: export DEBUG := true
test-postgres: $(VENV)/.dev-installed
	@if $(BIN)/python -m tests.check_postgres "$(PG_URL)"; then \
		echo "=== pytest on PostgreSQL ==="; \
		DATABASE_URL="$(PG_URL)" $(BIN)/pytest $(PYTEST_ARGS); \
	elif [ "$$CI" = "true" ]; then \
		echo "!!! PostgreSQL is unreachable and CI=true: the PostgreSQL run is mandatory. FAILING." >&2; \
		exit 1; \
	else \
		echo "" >&2; \
		echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!" >&2; \
		echo "!!! PostgreSQL is unreachable: the PostgreSQL test run was SKIPPED. Only SQLite ran." >&2; \
		echo "!!! Start it (pg_ctlcluster 15 main start) or set DATABASE_URL, then run make test." >&2; \
		echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!" >&2; \
	fi

lint: export DEBUG := true
lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/mypy

## make bench: speed ratios against raw-SQL baselines; writes docs/benchmarks.md.
bench: export DEBUG := true
bench: $(VENV)/.dev-installed
	DATABASE_URL="$(PG_URL)" $(BIN)/python -m benchmarks.run --pg-url "$(PG_URL)"

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis staticfiles db.sqlite3*
