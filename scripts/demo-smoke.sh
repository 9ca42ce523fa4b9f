#!/usr/bin/env bash
# Runs the README's demo command (`cargo run --example axum`) the way a newcomer does,
# pastes the token it prints into the curl lines it prints, and checks the answers.
set -euo pipefail
cd "$(dirname "$0")/.."

port="${DEMO_PORT:-3917}"
log="$(mktemp)"
db="$(mktemp -u --suffix=.sqlite3)"
cleanup() {
    [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -f "$log" "$db" "$db-wal" "$db-shm"
}
trap cleanup EXIT

cargo build --quiet --example axum
PORT="$port" TOWER_PAT_DEMO_DB="$db" cargo run --quiet --example axum >"$log" 2>&1 &
pid=$!
for _ in $(seq 1 120); do
    grep -q '^Listening on' "$log" && break
    kill -0 "$pid" 2>/dev/null || { cat "$log"; echo "demo smoke: the demo exited"; exit 1; }
    sleep 0.5
done
grep -q '^Listening on' "$log" || { cat "$log"; echo "demo smoke: the demo did not start"; exit 1; }

# The token lines, as a newcomer pastes them.
eval "$(grep -E '^  export (FULL|READER)=pat_[A-Za-z0-9]+$' "$log")"
base="http://127.0.0.1:$port"
expect() {
    local want="$1" token="$2" path="$3" got
    if [ -n "$token" ]; then
        got="$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "$base$path")"
    else
        got="$(curl -s -o /dev/null -w '%{http_code}' "$base$path")"
    fi
    printf '%s %-16s %s\n' "$got" "$path" "$( [ "$got" = "$want" ] && echo ok || echo "FAILED (want $want)")"
    [ "$got" = "$want" ]
}
expect 200 "$FULL" /orders
expect 403 "$READER" /orders
expect 200 "$READER" /orders/summary
expect 200 "$FULL" /user
expect 401 "pat_made_up" /user
expect 401 "" /orders
echo "demo smoke: passed"
