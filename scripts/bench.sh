#!/usr/bin/env bash
# Run benchmarks/eventstores.py, then benchmarks/feed_write_cost.py,
# benchmarks/metadata_cost.py, benchmarks/schema_cost.py,
# benchmarks/schema_versions.py (on PostgreSQL, then on SQLite) and
# benchmarks/read_side.py (called by `make bench`).
#
#   scripts/bench.sh [ARGS]     ARGS go to eventstores.py: --quick, --huge,
#                               --only AD, --stores ours,minimal, -r 5
#                               (see --help); the others get --quick if
#                               ARGS has it
#
# PostgreSQL: the server PGHOST (PGPORT, PGUSER, PGPASSWORD) names, if set;
# otherwise a throwaway cluster on 127.0.0.1 with PostgreSQL's default
# durability settings (scripts/postgres.sh with EVENTLOG_PG_DURABLE=1).
# Redis: REDIS_URL, if set; otherwise a throwaway redis-server on 127.0.0.1.
# Both are stopped and removed afterwards. django-eventlogs runs with
# Django's default database OPTIONS, as a user who leaves them alone gets
# them (EVENTLOG_PG_PREPARE=1: the OPTIONS docs/performance used to
# recommend, server-side binding and prepared statements).
set -euo pipefail

cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PG_DIR=
REDIS_DIR=

cleanup() {
    [[ -n $PG_DIR ]] && bash scripts/postgres.sh stop "$PG_DIR" || true
    [[ -n $REDIS_DIR ]] && bash scripts/redis.sh stop "$REDIS_DIR" || true
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ -z ${PGHOST:-} ]]; then
    eval "$(EVENTLOG_PG_DURABLE=1 bash scripts/postgres.sh start)"
    PG_DIR=$EVENTLOG_PG_DIR
fi
if [[ -z ${REDIS_URL:-} ]]; then
    eval "$(bash scripts/redis.sh start)"
    REDIS_DIR=$EVENTLOG_REDIS_DIR
fi
export EVENTLOG_PG_PREPARE=${EVENTLOG_PG_PREPARE:-0}
"$VENV/bin/python" benchmarks/eventstores.py "$@"
declare -a QUICK=()
for arg in "$@"; do
    if [[ $arg == --quick ]]; then QUICK=(--quick); fi
done
"$VENV/bin/python" benchmarks/feed_write_cost.py "${QUICK[@]}"
"$VENV/bin/python" benchmarks/metadata_cost.py "${QUICK[@]}"
"$VENV/bin/python" benchmarks/schema_cost.py "${QUICK[@]}"
# Compares with the library before schema versions, from git history.
EVENTLOG_DB=postgresql "$VENV/bin/python" benchmarks/schema_versions.py "${QUICK[@]}"
EVENTLOG_DB=sqlite "$VENV/bin/python" benchmarks/schema_versions.py "${QUICK[@]}"
"$VENV/bin/python" benchmarks/read_side.py "${QUICK[@]}"
