#!/usr/bin/env bash
# Throwaway Redis server for tests and CI.
#
#   eval "$(scripts/redis.sh start)"   # start; exports REDIS_URL + EVENTLOG_REDIS_DIR
#   scripts/redis.sh status            # PING the server in $EVENTLOG_REDIS_DIR
#   scripts/redis.sh stop              # stop it and delete its directory
#   scripts/redis.sh stop DIR          # same, for an explicit directory
#
# `start` writes only `export ...` lines to stdout (progress goes to stderr), so
# its output can be eval'ed. The server listens only on 127.0.0.1 on a free
# port (or $EVENTLOG_REDIS_PORT), runs daemonized with no persistence (no RDB
# snapshots, no AOF), and keeps its pid file and log in a fresh directory
# (mktemp -d /tmp/eventlog-redis.XXXXXX). REDIS_URL=redis://127.0.0.1:PORT/0.
# Exit status 3 means "redis-server not found".
set -euo pipefail

PROG=${0##*/}
MARKER=.eventlog-throwaway-redis

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# PING the server; works without redis-cli (bash /dev/tcp).
redis_ping() {
    local port=$1 reply=
    if command -v redis-cli >/dev/null 2>&1; then
        [[ $(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null) == PONG ]]
        return
    fi
    # (braces: a bare `exec ... 2>/dev/null` would silence the whole script)
    { exec 3<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null || return 1
    printf 'PING\r\n' >&3
    IFS= read -r -t 2 reply <&3 || true
    exec 3>&- 3<&-
    [[ $reply == +PONG* ]]
}

redis_shutdown() {
    local port=$1
    if command -v redis-cli >/dev/null 2>&1; then
        redis-cli -h 127.0.0.1 -p "$port" shutdown nosave >/dev/null 2>&1 || true
        return
    fi
    if { exec 3<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null; then
        printf 'SHUTDOWN NOSAVE\r\n' >&3 || true
        exec 3>&- 3<&- || true
    fi
}

show_log() {
    local f=$1
    if [[ -f $f ]]; then
        log "---- $f (last 40 lines) ----"
        tail -n 40 "$f" >&2 || true
        log "---- end of log ----"
    fi
}

cmd_start() {
    local server base port attempt ok=0 i
    if ! server=$(command -v redis-server 2>/dev/null); then
        cat >&2 <<'EOF'
scripts/redis.sh: error: redis-server not found on PATH.
  Install it (Debian/Ubuntu: apt-get install -y redis-server), or point the
  project at an existing server by exporting REDIS_URL=redis://HOST:PORT/DB.
EOF
        exit 3
    fi
    base=$(mktemp -d /tmp/eventlog-redis.XXXXXX)
    touch "$base/$MARKER"
    log "redis binary: $server ($("$server" --version 2>/dev/null | head -n 1))"

    for attempt in 1 2 3; do
        port=${EVENTLOG_REDIS_PORT:-$(free_port)}
        log "starting on 127.0.0.1:$port (attempt $attempt, log $base/redis.log)"
        : >"$base/redis.log"
        if "$server" --bind 127.0.0.1 --port "$port" --protected-mode yes \
            --daemonize yes --pidfile "$base/redis.pid" --logfile "$base/redis.log" \
            --dir "$base" --save '' --appendonly no >"$base/start.out" 2>&1; then
            for i in $(seq 50); do
                # Our daemon must be the one answering: it logs "Ready to accept
                # connections" only after binding (a PONG alone could come from
                # another server that already owns the port).
                if grep -q 'Ready to accept connections' "$base/redis.log" 2>/dev/null &&
                    redis_ping "$port"; then
                    ok=1
                    break
                fi
                # Daemon gave up (e.g. port taken)? Stop waiting.
                if grep -qiE 'address already in use|could not create server|failed listening' \
                    "$base/redis.log" 2>/dev/null; then
                    break
                fi
                sleep 0.2
            done
        fi
        [[ $ok -eq 1 ]] && break
        if grep -qi 'address already in use' "$base/redis.log" 2>/dev/null && [[ -z ${EVENTLOG_REDIS_PORT:-} ]]; then
            log "port $port was taken, retrying with another one"
            continue
        fi
        break
    done
    if [[ $ok -ne 1 ]]; then
        [[ -s $base/start.out ]] && show_log "$base/start.out"
        show_log "$base/redis.log"
        # Kill only our own daemon (never SHUTDOWN whatever else owns the port).
        local pid
        pid=$(cat "$base/redis.pid" 2>/dev/null || true)
        if [[ $pid =~ ^[0-9]+$ ]] && grep -q "^$pid:" "$base/redis.log" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
        fi
        rm -rf -- "$base"
        die "redis-server did not start (log above)"
    fi
    printf '%s\n' "$port" >"$base/port"
    log "ready: redis://127.0.0.1:$port/0 (stop with: $0 stop $base)"
    cat <<EOF
export REDIS_URL=redis://127.0.0.1:$port/0
export EVENTLOG_REDIS_DIR=$base
EOF
}

resolve_dir() {
    local dir=${1:-${EVENTLOG_REDIS_DIR:-}}
    [[ -n $dir ]] || die "no server directory: pass one or set EVENTLOG_REDIS_DIR"
    printf '%s\n' "$dir"
}

cmd_stop() {
    local dir port pid i
    dir=$(resolve_dir "${1:-}")
    if [[ ! -d $dir ]]; then
        log "nothing to stop: $dir does not exist"
        return 0
    fi
    [[ -f $dir/$MARKER ]] || die "$dir was not created by $PROG; refusing to touch it"
    port=$(cat "$dir/port" 2>/dev/null || true)
    pid=$(cat "$dir/redis.pid" 2>/dev/null || true)
    log "stopping redis in $dir"
    [[ -n $port ]] && redis_shutdown "$port"
    if [[ $pid =~ ^[0-9]+$ ]]; then
        for i in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            if [[ $i -eq 25 ]]; then kill -TERM "$pid" 2>/dev/null || true; fi
            sleep 0.2
        done
        if kill -0 "$pid" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -rf -- "$dir"
    log "removed $dir"
}

cmd_status() {
    local dir port
    dir=$(resolve_dir "${1:-}")
    port=$(cat "$dir/port" 2>/dev/null || true)
    [[ -n $port ]] || { log "no server recorded in $dir"; return 1; }
    if redis_ping "$port"; then
        echo "127.0.0.1:$port - PONG"
    else
        echo "127.0.0.1:$port - no response"
        return 1
    fi
}

case ${1:-} in
start) shift; cmd_start "$@" ;;
stop) shift; cmd_stop "$@" ;;
status) shift; cmd_status "$@" ;;
*)
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
