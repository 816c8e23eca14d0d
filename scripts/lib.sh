# Shared by scripts/postgres.sh and scripts/redis.sh (sourced, not run).
# shellcheck shell=bash

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { log "error: $*"; exit 1; }

free_port() {
    # Ask the kernel for a free port on 127.0.0.1 (tiny race until the server binds
    # it; start retries with another port if binding fails).
    local py p
    for py in python3 python; do
        if command -v "$py" >/dev/null 2>&1; then
            p=$("$py" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()' 2>/dev/null || true)
            if [[ $p =~ ^[0-9]+$ ]]; then
                printf '%s\n' "$p"
                return 0
            fi
        fi
    done
    # Fallback without Python: a random high port that nothing answers on.
    for _ in $(seq 50); do
        p=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            printf '%s\n' "$p"
            return 0
        fi
    done
    die "could not find a free TCP port"
}
