#!/usr/bin/env bash
# Run the checks and test suites of django-eventlogs (called by `make test`).
#
#   scripts/test.sh [all|lint|fast|sqlite|postgresql]...   (default: all)
#
#   lint        ruff check, ruff format --check, mypy, makemigrations --check,
#               the docs build (warnings are errors), benchmarks at a tiny size
#   fast        EVENTLOG_DB=sqlite pytest -m "not postgresql and not reliability and not browser
#               and not packaging": the quick check while working (under a minute);
#               the long-running suites of tests/reliability/ run in sqlite,
#               postgresql and all
#   sqlite      EVENTLOG_DB=sqlite pytest -m "not postgresql"   (the packaging tests included)
#   postgresql  EVENTLOG_DB=postgresql pytest -m "not packaging and not sqlite"
#               (every other test, PostgreSQL ones included; the packaging tests
#               use no database, the sqlite ones a SQLite file of their own)
#   all         lint, sqlite, postgresql, then both suites again on the oldest
#               (4.2, Python 3.10) and newest (6.x, Python 3.12+) Django,
#               without the browser and packaging tests (no Playwright or build there),
#               the scale and torture ones (the main Django's runs have them) and,
#               on PostgreSQL, the sqlite ones
#
# Environment:
#   VENV         virtualenv to use (default .venv; `make test` creates it)
#   PYTEST_ARGS  extra pytest arguments, shell-quoted (e.g. PYTEST_ARGS='-x -k "a or b"')
#   FAIL_FAST=1  stop at the first failing step (default: run every step, then
#                report all failures and exit non-zero if any)
#   PGHOST ...   if PGHOST is set, the PostgreSQL suite uses that server (with
#                PGPORT, PGUSER, PGPASSWORD, PGDATABASE); otherwise a throwaway
#                cluster is started by scripts/postgres.sh and removed afterwards.
#
# Functions below are run indirectly through `step`:
# shellcheck disable=SC2317
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=${VENV:-.venv}
FAIL_FAST=${FAIL_FAST:-0}

log() { printf '\n==> %s\n' "$*" >&2; }

if [[ ! -x $VENV/bin/python ]]; then
    echo "scripts/test.sh: no virtualenv at $VENV; run 'make test' (or 'make install') first" >&2
    exit 2
fi
export VIRTUAL_ENV=$ROOT/$VENV
[[ $VENV == /* ]] && VIRTUAL_ENV=$VENV
export PATH="$VIRTUAL_ENV/bin:$PATH"

# Extra pytest arguments, honouring shell quoting.
declare -a EXTRA_PYTEST_ARGS=()
if [[ -n ${PYTEST_ARGS:-} ]]; then
    eval "EXTRA_PYTEST_ARGS=(${PYTEST_ARGS})"
fi

now_ms() { local t=${EPOCHREALTIME//[!0-9]/}; echo $((t / 1000)); }
fmt_ms() { printf '%d.%01ds' $(($1 / 1000)) $((($1 % 1000) / 100)); }

declare -a SUMMARY=()
FAILED=0

# step NAME CMD...: run CMD, time it, record the outcome.
step() {
    local name=$1 rc=0 t0 dt
    shift
    log "$name"
    printf '    $' >&2; printf ' %q' "$@" >&2; printf '\n' >&2
    t0=$(now_ms)
    "$@" || rc=$?
    dt=$(($(now_ms) - t0))
    if [[ $rc -eq 0 ]]; then
        SUMMARY+=("$(printf '%-6s %8s  %s' ok "$(fmt_ms "$dt")" "$name")")
    else
        SUMMARY+=("$(printf '%-6s %8s  %s (exit %d)' FAILED "$(fmt_ms "$dt")" "$name" "$rc")")
        FAILED=1
        if [[ $FAIL_FAST == 1 ]]; then
            finish
        fi
    fi
    return 0
}

finish() {
    printf '\n==> summary\n' >&2
    local line
    for line in "${SUMMARY[@]}"; do printf '    %s\n' "$line" >&2; done
    if [[ $FAILED -ne 0 ]]; then
        printf '==> FAILED\n' >&2
        exit 1
    fi
    printf '==> all steps passed\n' >&2
    exit 0
}

# Exit status 5 (no tests collected) is an error for a plain run, but accepted
# when PYTEST_ARGS narrows the selection.
run_pytest() {
    local rc=0
    "${PYTEST_PYTHON:-python}" -m pytest -ra --durations=10 "$@" "${EXTRA_PYTEST_ARGS[@]}" || rc=$?
    if [[ $rc -eq 5 ]]; then
        if [[ ${#EXTRA_PYTEST_ARGS[@]} -gt 0 ]]; then
            echo "scripts/test.sh: no tests selected by PYTEST_ARGS here; accepted" >&2
            return 0
        fi
        echo "scripts/test.sh: pytest collected no tests" >&2
    fi
    return "$rc"
}

build_docs() {
    sphinx-build -W --keep-going -q -b html docs docs/_build/html || return 1
    # reStructuredText that MyST printed as text instead of running it.
    if grep -l '\.\. \(py\|auto\)[a-z:]*::' docs/_build/html/*.html; then
        echo "scripts/test.sh: the pages above show directives as text" >&2
        return 1
    fi
}

do_lint() {
    step "ruff check" ruff check .
    step "ruff format --check" ruff format --check .
    step "mypy" env EVENTLOG_DB=sqlite mypy .
    step "makemigrations --check" \
        env EVENTLOG_DB=sqlite python manage.py makemigrations --check --dry-run
    # The tests' own read models (tests.readmodels) too.
    step "makemigrations --check (tests.settings)" \
        env EVENTLOG_DB=sqlite DJANGO_SETTINGS_MODULE=tests.settings \
        python manage.py makemigrations --check --dry-run
    # Event classes changed without a schema_version bump and an upcaster.
    step "eventlog_schemas --check" \
        env EVENTLOG_DB=sqlite python manage.py eventlog_schemas --check
    step "docs (sphinx-build -W)" build_docs
    # Benchmarks are not timed tests: a tiny run keeps them working.
    step "benchmarks (quick)" python benchmarks/event_codec.py --quick
    step "benchmarks/batch_append.py (quick)" \
        env EVENTLOG_DB=sqlite python benchmarks/batch_append.py --quick
}

PG_STARTED_DIR=
stop_pg() {
    if [[ -n $PG_STARTED_DIR ]]; then
        bash "$ROOT/scripts/postgres.sh" stop "$PG_STARTED_DIR" || true
        PG_STARTED_DIR=
        unset PGHOST PGPORT PGUSER PGDATABASE EVENTLOG_PG_DIR
    fi
}
trap stop_pg EXIT
trap 'stop_pg; exit 130' INT
trap 'stop_pg; exit 143' TERM

start_pg() {
    local out rc=0
    if [[ -n ${PGHOST:-} ]]; then
        echo "scripts/test.sh: using the PostgreSQL server from the environment:" \
            "PGHOST=$PGHOST PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}" \
            "PGDATABASE=${PGDATABASE:-eventlog}" >&2
        if command -v pg_isready >/dev/null 2>&1 && ! pg_isready -t 10; then
            echo "scripts/test.sh: that server is not accepting connections" >&2
            return 1
        fi
        return 0
    fi
    out=$(bash "$ROOT/scripts/postgres.sh" start) || rc=$?
    if [[ $rc -ne 0 ]]; then
        cat >&2 <<'EOF'
scripts/test.sh: could not start a throwaway PostgreSQL cluster, so the PostgreSQL
  test suite did NOT run. Install PostgreSQL (Debian: apt-get install -y postgresql)
  or export PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE for an existing server.
EOF
        return 1
    fi
    eval "$out"
    PG_STARTED_DIR=$EVENTLOG_PG_DIR
}

# `VAR=value function` scopes VAR to the function and its children (env(1)
# cannot run shell functions).
with_db() {
    local db=$1
    shift
    EVENTLOG_DB=$db "$@"
}

with_prepare() {
    local prepare=$1
    shift
    EVENTLOG_PG_PREPARE=$prepare "$@"
}

do_fast() {
    step "pytest (SQLite, fast)" with_db sqlite \
        run_pytest -m "not postgresql and not reliability and not browser and not packaging"
}

do_sqlite() {
    step "pytest (SQLite)" with_db sqlite run_pytest -m "not postgresql"
}

do_postgresql() {
    step "start PostgreSQL" start_pg
    if [[ ${SUMMARY[-1]} == ok* ]]; then
        step "pytest (PostgreSQL)" with_db postgresql \
            run_pytest -m "not packaging and not sqlite"
        # Not timed: a tiny run keeps the comparison benchmarks working.
        step "make bench --quick (scripts/bench.sh: eventstores, feed, metadata, schema_cost, ...)" \
            bash scripts/bench.sh --quick
        step "benchmarks/gap_guard.py (quick)" python benchmarks/gap_guard.py --quick
        [[ ${WITH_COMPAT:-0} == 1 ]] && do_compat
    fi
    stop_pg
}

# The oldest and newest supported Django, each on a Python it supports, in
# virtualenvs of their own: the whole suite on SQLite and PostgreSQL.
find_python() {
    local version candidate
    for version in "$@"; do
        # pyenv's shims exist for versions that are not selected, so try each
        # candidate rather than trusting `command -v`.
        for candidate in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$version".*/bin/python \
            "/usr/bin/python$version" "python$version"; do
            if "$candidate" -c 'import venv' >/dev/null 2>&1; then
                command -v "$candidate"
                return 0
            fi
        done
    done
    return 1
}

compat_venv() {
    local venv=$1 python=$2 django=$3
    [[ -x $venv/bin/python ]] || "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --disable-pip-version-check --progress-bar off -q \
        -e ".[postgresql,redis]" "$django" pytest pytest-django hypothesis factory-boy 2>&1 |
        { grep -v 'is ignored: it is neither a file nor a directory' || true; }
    "$venv/bin/python" -c 'import django, sys; print("Django", django.get_version(), "on Python", sys.version.split()[0])'
}

compat_pytest() {
    local venv=$1
    shift
    PYTEST_PYTHON=$venv/bin/python run_pytest "$@"
}

do_compat() {
    local spec venv python django pythons
    for spec in "django42|Django>=4.2,<5.0|3.10 3.11 3.12 3" "django6|Django>=6.0,<7|3.12 3.13 3"; do
        IFS='|' read -r venv django pythons <<<"$spec"
        venv=.venv-$venv
        # shellcheck disable=SC2086
        if ! python=$(find_python $pythons); then
            step "$django: no Python among $pythons" false
            continue
        fi
        step "install $django ($python)" compat_venv "$venv" "$python" "$django"
        [[ ${SUMMARY[-1]} == ok* ]] || continue
        # These venvs have no Playwright or build: the browser and packaging
        # tests run in the main suites.
        # The long-running suites of tests/reliability/ (the torture and
        # scale runs, the read side's proof, model-based and fault runs)
        # stress the database, the cache and the processes, not Django: the
        # main Django's runs have them, on both databases. Without them the
        # four runs here take about 4 minutes less, which keeps CI under
        # 25 minutes.
        step "pytest $django (SQLite)" with_db sqlite \
            compat_pytest "$venv" \
            -m "not postgresql and not browser and not packaging and not reliability"
        # The newest Django also runs with server-side binding and prepared
        # statements (EVENTLOG_PG_PREPARE=1), the set-up the docs recommend.
        prepare=0
        [[ $venv == .venv-django6 ]] && prepare=1
        # On PostgreSQL, the sqlite ones too.
        step "pytest $django (PostgreSQL, EVENTLOG_PG_PREPARE=$prepare)" with_db postgresql \
            with_prepare $prepare compat_pytest "$venv" \
            -m "not browser and not packaging and not reliability and not sqlite"
    done
}

[[ $# -gt 0 ]] || set -- all
for target in "$@"; do
    case $target in
    all) do_lint; do_sqlite; WITH_COMPAT=1 do_postgresql ;;
    lint) do_lint ;;
    fast) do_fast ;;
    sqlite) do_sqlite ;;
    postgresql | postgres | pg) do_postgresql ;;
    *) echo "scripts/test.sh: unknown target '$target' (all|lint|fast|sqlite|postgresql)" >&2; exit 2 ;;
    esac
done
finish
