#!/usr/bin/env bash
# Throwaway PostgreSQL cluster for tests and CI.
#
#   eval "$(scripts/postgres.sh start)"   # start; exports PG* vars + EVENTLOG_PG_DIR
#   scripts/postgres.sh status            # is the cluster in $EVENTLOG_PG_DIR running?
#   scripts/postgres.sh stop              # stop it and delete its directory
#   scripts/postgres.sh stop DIR          # same, for an explicit directory
#   scripts/postgres.sh restart [DIR]     # fast shutdown, then start again (same
#                                         # port and data; pauses EVENTLOG_PG_DOWN_SECONDS)
#
# `start` writes only `export ...` lines to stdout (progress goes to stderr), so
# its output can be eval'ed. The cluster:
#   * lives in a fresh directory (default: mktemp -d /tmp/eventlog-pg.XXXXXX,
#     or $EVENTLOG_PG_DIR if that names a directory that does not exist yet),
#   * listens only on 127.0.0.1 on a free port (or $EVENTLOG_PG_PORT),
#     with its Unix socket inside the data directory,
#   * runs without fsync, synchronous_commit or full_page_writes (throwaway
#     data), unless EVENTLOG_PG_DURABLE=1 keeps PostgreSQL's default
#     durability settings (as the benchmarks do),
#   * uses trust authentication, superuser `postgres`, and has a database
#     `eventlog` (PGDATABASE),
#   * is run by the `postgres` OS user when this script runs as root
#     (PostgreSQL refuses to run as root), otherwise by the current user.
#
# Server binaries: $EVENTLOG_PG_BINDIR, else the newest /usr/lib/postgresql/*/bin,
# else `pg_config --bindir`, else wherever `initdb` is on PATH.
# Exit status 3 means "no PostgreSQL server binaries found".
set -euo pipefail

PROG=${0##*/}
MARKER=.eventlog-throwaway-postgres
DBNAME=eventlog
SUPERUSER=postgres

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

find_bindir() {
    local d
    if [[ -n ${EVENTLOG_PG_BINDIR:-} ]]; then
        [[ -x $EVENTLOG_PG_BINDIR/initdb ]] ||
            die "EVENTLOG_PG_BINDIR=$EVENTLOG_PG_BINDIR has no initdb"
        printf '%s\n' "$EVENTLOG_PG_BINDIR"
        return
    fi
    # Newest Debian/Ubuntu-style installation first.
    d=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    if [[ -n $d && -x $d/initdb ]]; then printf '%s\n' "$d"; return; fi
    if command -v pg_config >/dev/null 2>&1; then
        d=$(pg_config --bindir 2>/dev/null || true)
        if [[ -n $d && -x $d/initdb ]]; then printf '%s\n' "$d"; return; fi
    fi
    if d=$(command -v initdb 2>/dev/null); then
        printf '%s\n' "$(dirname "$d")"
        return
    fi
    return 1
}

no_binaries() {
    cat >&2 <<'EOF'
scripts/postgres.sh: error: no PostgreSQL server binaries (initdb, pg_ctl) found.
  Looked in $EVENTLOG_PG_BINDIR, /usr/lib/postgresql/*/bin, `pg_config --bindir`, PATH.
  Either install PostgreSQL (Debian/Ubuntu: apt-get install -y postgresql),
  or point the tests at an existing server by exporting PGHOST (and PGPORT,
  PGUSER, PGPASSWORD, PGDATABASE as needed) before running `make test`.
EOF
    exit 3
}

# Run a command as the cluster owner (postgres when we are root).
as_owner() {
    if [[ $(id -u) -eq 0 ]]; then
        if command -v runuser >/dev/null 2>&1; then
            (cd / && runuser -u "$OWNER" -- "$@")
        else
            local q
            printf -v q '%q ' "$@"
            (cd / && su -s /bin/sh "$OWNER" -c "$q")
        fi
    else
        "$@"
    fi
}

show_log() {
    local f=$1
    if [[ -f $f ]]; then
        log "---- $f (last 60 lines) ----"
        tail -n 60 "$f" >&2 || true
        log "---- end of log ----"
    fi
}

cmd_start() {
    local bindir base port data logf attempt ok=0
    bindir=$(find_bindir) || no_binaries

    OWNER=$(id -un)
    if [[ $(id -u) -eq 0 ]]; then
        OWNER=postgres
        id "$OWNER" >/dev/null 2>&1 ||
            die "running as root but there is no '$OWNER' OS user to run PostgreSQL" \
                "(create one, e.g. 'useradd --system --home /var/lib/postgresql postgres', or run as a normal user)"
    fi

    if [[ -n ${EVENTLOG_PG_DIR:-} && ! -e $EVENTLOG_PG_DIR ]]; then
        base=$EVENTLOG_PG_DIR
        mkdir -p "$base"
    else
        # /tmp rather than $TMPDIR: the postgres user must be able to reach it.
        base=$(mktemp -d /tmp/eventlog-pg.XXXXXX)
    fi
    base=$(cd "$base" && pwd -P)
    touch "$base/$MARKER"
    data=$base/data
    logf=$base/postgres.log
    mkdir -p "$data"
    chmod 755 "$base"
    chmod 700 "$data"
    if [[ $(id -u) -eq 0 ]]; then
        chown -R "$OWNER:" "$base"
    fi

    log "PostgreSQL binaries: $bindir ($("$bindir/postgres" --version 2>/dev/null || echo '?'))"
    log "initdb into $data (owner $OWNER)"
    if ! as_owner "$bindir/initdb" -D "$data" -U "$SUPERUSER" --auth=trust \
        --encoding=UTF8 --locale=C --no-sync >"$base/initdb.log" 2>&1; then
        show_log "$base/initdb.log"
        rm -rf -- "$base"
        die "initdb failed"
    fi

    for attempt in 1 2 3; do
        port=${EVENTLOG_PG_PORT:-$(free_port)}
        # Settings go in postgresql.auto.conf-style include so retries can rewrite them.
        cat >"$data/eventlog.conf" <<EOF
# written by scripts/postgres.sh (throwaway test cluster)
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$data'
max_connections = 100
logging_collector = off
EOF
        if [[ ${EVENTLOG_PG_DURABLE:-0} != 1 ]]; then
            # Throwaway data: durability is not needed, speed is.
            printf 'fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n' \
                >>"$data/eventlog.conf"
        fi
        if ! grep -q "^include = 'eventlog.conf'" "$data/postgresql.conf"; then
            printf "\ninclude = 'eventlog.conf'\n" >>"$data/postgresql.conf"
        fi
        [[ $(id -u) -eq 0 ]] && chown "$OWNER:" "$data/eventlog.conf" "$data/postgresql.conf"

        log "starting on 127.0.0.1:$port (attempt $attempt, log $logf)"
        : >"$logf"
        [[ $(id -u) -eq 0 ]] && chown "$OWNER:" "$logf"
        if as_owner "$bindir/pg_ctl" -D "$data" -l "$logf" -w -t 60 start >/dev/null 2>&1; then
            ok=1
            break
        fi
        if grep -qiE 'could not bind|address already in use' "$logf" && [[ -z ${EVENTLOG_PG_PORT:-} ]]; then
            log "port $port was taken, retrying with another one"
            continue
        fi
        break
    done
    if [[ $ok -ne 1 ]]; then
        show_log "$logf"
        as_owner "$bindir/pg_ctl" -D "$data" -m immediate stop >/dev/null 2>&1 || true
        rm -rf -- "$base"
        die "PostgreSQL did not start (log above)"
    fi

    # pg_ctl -w already waited; double-check over TCP like the tests will connect.
    local i
    for i in $(seq 60); do
        if "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port" -U "$SUPERUSER" -d postgres; then
            break
        fi
        if [[ $i -eq 60 ]]; then
            show_log "$logf"
            cmd_stop "$base"
            die "PostgreSQL on 127.0.0.1:$port is not accepting connections"
        fi
        sleep 0.5
    done

    if ! "$bindir/createdb" -h 127.0.0.1 -p "$port" -U "$SUPERUSER" "$DBNAME" 2>"$base/createdb.log"; then
        cat "$base/createdb.log" >&2
        show_log "$logf"
        cmd_stop "$base"
        die "createdb $DBNAME failed"
    fi
    printf '%s\n' "$bindir" >"$base/bindir"
    printf '%s\n' "$port" >"$base/port"
    log "ready: postgresql://$SUPERUSER@127.0.0.1:$port/$DBNAME (stop with: $0 stop $base)"

    cat <<EOF
export PGHOST=127.0.0.1
export PGPORT=$port
export PGUSER=$SUPERUSER
unset PGPASSWORD
export PGDATABASE=$DBNAME
export EVENTLOG_PG_DIR=$base
EOF
}

resolve_dir() {
    local dir=${1:-${EVENTLOG_PG_DIR:-}}
    [[ -n $dir ]] || die "no cluster directory: pass one or set EVENTLOG_PG_DIR"
    printf '%s\n' "$dir"
}

cmd_stop() {
    local dir bindir
    dir=$(resolve_dir "${1:-}")
    if [[ ! -d $dir ]]; then
        log "nothing to stop: $dir does not exist"
        return 0
    fi
    [[ -f $dir/$MARKER ]] || die "$dir was not created by $PROG; refusing to touch it"
    bindir=$(cat "$dir/bindir" 2>/dev/null || find_bindir || true)
    OWNER=postgres
    [[ $(id -u) -eq 0 ]] || OWNER=$(id -un)
    if [[ -n $bindir && -f $dir/data/postmaster.pid ]]; then
        log "stopping PostgreSQL in $dir"
        if ! as_owner "$bindir/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null 2>&1; then
            log "fast shutdown failed; trying immediate"
            as_owner "$bindir/pg_ctl" -D "$dir/data" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
        fi
    fi
    if [[ -f $dir/data/postmaster.pid ]]; then
        # Last resort: kill the postmaster recorded in the pid file.
        local pid
        pid=$(head -n 1 "$dir/data/postmaster.pid" 2>/dev/null || true)
        if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
            log "killing postmaster $pid"
            kill -QUIT "$pid" 2>/dev/null || true
            sleep 1
        fi
    fi
    rm -rf -- "$dir"
    log "removed $dir"
}

cmd_restart() {
    local dir bindir logf
    dir=$(resolve_dir "${1:-}")
    [[ -f $dir/$MARKER ]] || die "$dir was not created by $PROG; refusing to touch it"
    bindir=$(cat "$dir/bindir" 2>/dev/null || true)
    [[ -n $bindir && -f $dir/data/postmaster.pid ]] || die "$dir has no running cluster"
    OWNER=postgres
    [[ $(id -u) -eq 0 ]] || OWNER=$(id -un)
    logf=$dir/postgres.log
    log "restarting PostgreSQL in $dir (fast shutdown)"
    as_owner "$bindir/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null 2>&1 ||
        die "PostgreSQL in $dir did not stop"
    sleep "${EVENTLOG_PG_DOWN_SECONDS:-0}"
    if ! as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$logf" -w -t 60 start >/dev/null 2>&1; then
        show_log "$logf"
        die "PostgreSQL in $dir did not start again (log above)"
    fi
    log "running again on 127.0.0.1:$(cat "$dir/port" 2>/dev/null || echo '?')"
}

cmd_status() {
    local dir bindir port
    dir=$(resolve_dir "${1:-}")
    [[ -d $dir ]] || { log "not running: $dir does not exist"; return 1; }
    bindir=$(cat "$dir/bindir" 2>/dev/null || true)
    port=$(cat "$dir/port" 2>/dev/null || true)
    [[ -n $bindir && -n $port ]] || { log "$dir has no running cluster"; return 1; }
    "$bindir/pg_isready" -h 127.0.0.1 -p "$port"
}

case ${1:-} in
start) shift; cmd_start "$@" ;;
stop) shift; cmd_stop "$@" ;;
status) shift; cmd_status "$@" ;;
restart) shift; cmd_restart "$@" ;;
*)
    sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
