#!/usr/bin/env bash
# Fuzz smoke: runs every cargo-fuzz target of fuzz/ for a short while and prints how many
# inputs each one executed. A crash fails the script and leaves the input in
# fuzz/artifacts/<target>/ (replay it with `cargo fuzz run --fuzz-dir fuzz <target> <file>`).
#
#   scripts/fuzz-smoke.sh                      # 60 s per target
#   FUZZ_SECONDS=600 scripts/fuzz-smoke.sh     # a longer run
#   FUZZ_TARGETS="stack token_parse" scripts/fuzz-smoke.sh
#   FUZZ_SANITIZER=address scripts/fuzz-smoke.sh
#   FUZZ_TARGET_DIR=/var/tmp/mine scripts/fuzz-smoke.sh   # else $CARGO_TARGET_DIR, else a default
#
# Without cargo-fuzz (`cargo install cargo-fuzz`) it says so and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-60}"
# The crate forbids unsafe code, so the default trades AddressSanitizer for speed; set
# FUZZ_SANITIZER=address to run the dependencies' unsafe code under ASan.
sanitizer="${FUZZ_SANITIZER:-none}"
target_dir="${FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:-/var/tmp/tower-pat-fuzz-target}}"
read -r -a targets <<<"${FUZZ_TARGETS:-authorization_header token_parse scope_parse stack}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz smoke: skipped (cargo-fuzz is not installed; cargo install cargo-fuzz)"
    exit 0
fi

# cargo-fuzz passes nightly-only flags (-Z, sanitizer coverage passes) to rustc. On a
# stable toolchain RUSTC_BOOTSTRAP=1 lets the installed compiler accept them.
if ! rustc --version | grep -q nightly; then
    export RUSTC_BOOTSTRAP=1
fi

fuzz() {
    cargo fuzz "$1" --fuzz-dir fuzz --sanitizer "$sanitizer" --target-dir "$target_dir" "${@:2}"
}

logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT

echo "fuzz smoke: building the targets (sanitizer: $sanitizer)"
if ! fuzz build >"$logs/build.log" 2>&1; then
    tail -n 60 "$logs/build.log"
    echo "fuzz smoke: FAILED: the fuzz targets do not build"
    exit 1
fi

failed=()
printf '%-22s %14s %8s %10s %8s %8s\n' target executions seconds exec/s cov ft
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t"
    log="$logs/$t.log"
    status=0
    fuzz run "$t" "fuzz/corpus/$t" -- \
        -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1 || status=$?
    execs="$(grep -m1 'stat::number_of_executed_units' "$log" | awk '{print $2}' || true)"
    secs="$(grep -m1 '^Done [0-9]* runs in' "$log" | awk '{print $5}' || true)"
    last="$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -n 1 || true)"
    cov="$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<<"$last")"
    ft="$(sed -n 's/.*ft: \([0-9]*\).*/\1/p' <<<"$last")"
    rate="-"
    if [ -n "$execs" ] && [ -n "$secs" ] && [ "$secs" -gt 0 ]; then
        rate=$((execs / secs))
    fi
    printf '%-22s %14s %8s %10s %8s %8s\n' "$t" "${execs:-?}" "${secs:-?}" "$rate" "${cov:-?}" "${ft:-?}"
    if [ "$status" -ne 0 ]; then
        failed+=("$t")
        echo "---- $t failed (exit $status); the end of its log:"
        tail -n 40 "$log"
        echo "----"
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz smoke: FAILED: ${failed[*]} (inputs in fuzz/artifacts/)"
    exit 1
fi
echo "fuzz smoke: ${#targets[@]} targets, ${seconds}s each, no crash"
