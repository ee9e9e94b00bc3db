#!/usr/bin/env bash
# Runs the fuzz targets, each for SECONDS, and reports executions and
# findings per target:
#
#   fuzz/run.sh SECONDS [TARGET ...]     (all targets when none is named)
#
# PARALLEL=N runs N targets at once (default 1). Each target starts from its
# checked-in seeds (fuzz/seeds/T) plus what earlier runs here found
# (fuzz/corpus/T, not checked in). A crash, a sanitizer report, a timeout
# (an input taking over 10 s: a client could stall a worker with it) or an
# out-of-memory (over 2 GiB) is a finding: the input is kept in
# fuzz/artifacts/T/ and the script exits 1. Needs the nightly toolchain
# (installed with rustup) and cargo-fuzz (installed here if missing).
#
# FUZZ_SEED=N fixes libFuzzer's random seed, so a run from the same seeds
# mutates the same inputs in the same order: CI sets it, so its brief run
# is a repeatable regression check over the first executions of a sequence
# the long runs have already covered, never a lottery on what 20 s of new
# mutations happen to hit. The long runs leave it unset (a new seed each).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
secs=${1:?usage: fuzz/run.sh SECONDS [TARGET ...]}
shift
CARGO_FUZZ_VERSION=0.13.1
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz $CARGO_FUZZ_VERSION" >&2
    cargo install --locked --quiet cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi
cargo +nightly fuzz build >build.log 2>&1 || { cat build.log; exit 1; }
logs=$(mktemp -d)
run_one() {
    local t=$1
    mkdir -p "corpus/$t" "seeds/$t" "artifacts/$t"
    local rc=0 seed=()
    [ -n "${FUZZ_SEED:-}" ] && seed=(-seed="$FUZZ_SEED")
    cargo +nightly fuzz run "$t" "corpus/$t" "seeds/$t" -- "${seed[@]}" \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="artifacts/$t/" >"$logs/$t.log" 2>&1 || rc=$?
    echo "$rc" >"$logs/$t.rc"
}
running=0
for t in "${targets[@]}"; do
    run_one "$t" &
    running=$((running + 1))
    if [ "$running" -ge "${PARALLEL:-1}" ]; then
        wait -n || true
        running=$((running - 1))
    fi
done
wait || true
failed=0
printf '%-16s %8s %12s %10s %8s %s\n' target seconds executions exec/s corpus findings
for t in "${targets[@]}"; do
    log="$logs/$t.log"
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1 || true)
    took=$(grep -o 'Done [0-9]* runs in [0-9]* second' "$log" | grep -o 'in [0-9]*' | grep -o '[0-9]*' | tail -1 || true)
    found=$(find "artifacts/$t" -type f | wc -l)
    rc=$(cat "$logs/$t.rc" 2>/dev/null || echo "?")
    rate=$(( ${execs:-0} / ( ${took:-$secs} > 0 ? ${took:-$secs} : 1 ) ))
    printf '%-16s %8s %12s %10s %8s %s\n' "$t" "${took:-?}" "${execs:-?}" "$rate" \
        "$(find "corpus/$t" -type f | wc -l)" "$found"
    if [ "$rc" != 0 ] || [ "$found" != 0 ]; then
        failed=1
        echo "--- $t: exit $rc; the end of its log:" >&2
        grep -v "^#[0-9]" "$log" | cut -c1-300 | tail -40 >&2
    fi
done
rm -rf "$logs"
exit $failed
