#!/usr/bin/env bash
# Counts the instructions one request of each `stack` bench case costs, under callgrind:
# a figure that does not move with the load of a shared machine, as wall-clock time does.
# Only the measured loop is counted (callgrind toggles collection on the case's closure),
# on the thread that runs it; each case runs N and 2N requests and the difference over N is
# one request, so what the first request pays once (lazy initialisation) cancels out, as do
# the setup (filling the stores) and the runtime's other threads. Overhead is over
# `baseline` (an empty service).
#
#   scripts/count-instructions.sh                         # the default cases, N = 2000
#   N=5000 scripts/count-instructions.sh hot_token floor
#
# Needs valgrind; cached_postgres needs TOWER_PAT_POSTGRES_URL.
set -euo pipefail
cd "$(dirname "$0")/.."

n="${N:-2000}"
cases=("$@")
if [ "${#cases[@]}" -eq 0 ]; then
    cases=(baseline floor hot_token scope_map_50 cached_sqlite garbage_token no_header jwt_hs256)
    if [ -n "${TOWER_PAT_POSTGRES_URL:-}" ]; then cases+=(cached_postgres); fi
fi
case " ${cases[*]} " in *" baseline "*) ;; *) cases=(baseline "${cases[@]}") ;; esac

cargo bench --all-features --bench stack --no-run 2>/dev/null
bin="$(cargo bench --all-features --bench stack --no-run --message-format=json 2>/dev/null |
    sed -n 's/.*"executable":"\([^"]*stack[^"]*\)".*/\1/p' | tail -n 1)"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

count() { # case requests -> instructions of the measured loop
    STACK_COUNT="$1" STACK_REQUESTS="$2" valgrind --tool=callgrind \
        --collect-atstart=no --toggle-collect='*Case*new*closure*' --separate-threads=yes \
        --callgrind-out-file="$out/cg" "$bin" >/dev/null 2>"$out/log" ||
        { cat "$out/log"; exit 1; }
    cat "$out"/cg* | sed -n 's/^summary: *//p' | sort -n | tail -n 1
    rm -f "$out"/cg*
}

declare -A per
printf '%-18s %14s %12s\n' case instructions overhead
for c in "${cases[@]}"; do
    one="$(count "$c" "$n")"
    two="$(count "$c" $((2 * n)))"
    per[$c]=$(((two - one) / n))
    printf '%-18s %14d %+12d\n' "$c" "${per[$c]}" $((per[$c] - per[baseline]))
done
