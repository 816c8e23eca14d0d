# django-eventlogs developer tasks (CONTRIBUTING.md explains them).
#
#   make demo                      SQLite demo: migrate, walk-through, seed, projections --once, admin user,
#                                  serve on 127.0.0.1:8000 with the projections' runner in the background
#   make demo NO_SERVE=1           the same without the server and the runner (CI runs this)
#   make test                      everything: lint + SQLite suite + PostgreSQL suite
#   make test PYTEST_ARGS=-x       extra pytest arguments (shell-quoted)
#   make lint                      ruff check, ruff format --check, mypy, makemigrations --check
#   make test-sqlite / test-postgresql
#   make test-fast                 the fast suite, under a minute: SQLite, without the PostgreSQL,
#                                  reliability (tests/reliability/), browser and packaging tests
#   make bench                     django-eventlogs vs raw psycopg vs eventsourcing, then the
#                                  feed's and the metadata's write cost, a cold reduce vs
#                                  before schema versions, the read side (BENCH_ARGS=--quick)
#   make docs                      build the documentation into docs/_build/html (warnings are errors)
#   make install                   (re)install the package and requirements/dev.txt into $(VENV)
#
# PostgreSQL: if PGHOST is set, `make test` uses that server (PGPORT, PGUSER,
# PGPASSWORD, PGDATABASE); otherwise it starts a throwaway cluster with
# scripts/postgres.sh on 127.0.0.1 and a free port, and removes it afterwards.
# Another interpreter: make test PYTHON=/root/.pyenv/versions/3.12.1/bin/python VENV=.venv-3.12

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
EXTRAS ?= postgresql,redis,testing
BENCH_ARGS ?=
PYTEST_ARGS ?=
FAIL_FAST ?= 0

PY := $(VENV)/bin/python
REQUIREMENTS := requirements/dev.txt
# Rebuilt when pyproject.toml or requirements/ change (or the venv is deleted).
STAMP := $(VENV)/.eventlog-installed

export VENV PYTEST_ARGS FAIL_FAST

.PHONY: help install lint test test-fast test-sqlite test-postgresql bench docs demo clean distclean

help:
	@sed '/^$$/q' Makefile | sed 's/^# \{0,1\}//'

$(STAMP): pyproject.toml $(wildcard requirements/*.txt)
	@if [ ! -x "$(PY)" ]; then \
		echo "==> creating virtualenv $(VENV) with $(PYTHON)"; \
		$(PYTHON) -m venv "$(VENV)"; \
	fi
	@echo "==> installing -e '.[$(EXTRAS)]' -r $(REQUIREMENTS) into $(VENV)"
	@# (the filter drops pip's notes about absent local index mirrors in this machine's pip config)
	"$(PY)" -m pip install --disable-pip-version-check --progress-bar off -q \
		-e '.[$(EXTRAS)]' -r "$(REQUIREMENTS)" 2>&1 \
		| { grep -v 'is ignored: it is neither a file nor a directory' || true; }
	@touch "$@"

install:
	@rm -f "$(STAMP)"
	@$(MAKE) --no-print-directory "$(STAMP)"

lint: $(STAMP)
	bash scripts/test.sh lint

test: $(STAMP)
	bash scripts/test.sh all

test-fast: $(STAMP)
	bash scripts/test.sh fast

test-sqlite: $(STAMP)
	bash scripts/test.sh sqlite

test-postgresql: $(STAMP)
	bash scripts/test.sh postgresql

bench: $(STAMP)
	bash scripts/bench.sh $(BENCH_ARGS)

docs: $(STAMP)
	"$(VENV)/bin/sphinx-build" -W --keep-going -q -b html docs docs/_build/html
	@echo "Open docs/_build/html/index.html"

demo: $(STAMP)
	EVENTLOG_DB=sqlite "$(PY)" manage.py migrate
	EVENTLOG_DB=sqlite "$(PY)" manage.py payment_walkthrough
	EVENTLOG_DB=sqlite "$(PY)" manage.py seed_payments --count 300
	@# The read model and the authorizer catch up with everything seeded.
	EVENTLOG_DB=sqlite "$(PY)" manage.py eventlog_projections run --once
	EVENTLOG_DB=sqlite "$(PY)" manage.py demo_admin
	@echo
	@echo "Open:  http://127.0.0.1:8000/admin/                  (log in with the credentials above)"
	@echo "       http://127.0.0.1:8000/api/payments/?status=authorized   (the read model, page by page)"
	@echo "       http://127.0.0.1:8000/api/feed/               (every payment event; log in at /admin/ first)"
	@echo "Try:   curl -si -X POST http://127.0.0.1:8000/api/payments/ -H 'Content-Type: application/json' -H 'Idempotency-Key: \"try-1\"' -d '{\"amount\": 10000}'"
ifeq ($(NO_SERVE),1)
	@echo "NO_SERVE=1: not starting the server."
else
	@# The projections' runner keeps the read model (and the authorizer) up
	@# to date in the background while the server runs; stopped with it
	@# (Ctrl-C reaches both).
	EVENTLOG_DB=sqlite "$(PY)" manage.py eventlog_projections run & runner=$$!; \
	trap 'kill -TERM $$runner 2>/dev/null || true; wait $$runner || true' EXIT; \
	EVENTLOG_DB=sqlite "$(PY)" manage.py runserver 127.0.0.1:8000
endif

clean:
	rm -rf .mypy_cache .ruff_cache .pytest_cache .hypothesis build dist artifacts docs/_build
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
	rm -rf *.egg-info

distclean: clean
	rm -rf "$(VENV)" db.sqlite3
