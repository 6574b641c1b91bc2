#!/usr/bin/env bash
# Runs one libFuzzer target for a bounded time and says how it went, for
# `make fuzz` (long runs) and tests/run.sh (brief ones):
#
#   tests/fuzz/run.sh BIN SECONDS [RUNS]
#
# BIN runs for at most SECONDS (-max_total_time) and, when given, RUNS
# inputs (-runs), inputs up to 4096 bytes, 30 s at most per input (a slower
# one is a finding: a hang). The corpus lives in build/fuzz/corpus/NAME, so
# a run starts where the last one ended (repeatable: delete the folder to
# start over); it is seeded from tests/fuzz/seeds/NAME when that exists.
# A finding is written to build/fuzz/findings/NAME/ and its log kept in
# build/fuzz/NAME.log; replay it with `BIN FILE`.
#
# Prints one line, "NAME: ok (N runs, S s)" or "NAME: FINDING ...", and
# exits 1 on a finding (or when the target would not run).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
[ $# -ge 2 ] || { echo "usage: tests/fuzz/run.sh BIN SECONDS [RUNS]" >&2; exit 2; }
bin="$1" seconds="$2" runs="${3:-}"
name="$(basename "$bin")"
corpus="$ROOT/build/fuzz/corpus/$name"
findings="$ROOT/build/fuzz/findings/$name"
log="$ROOT/build/fuzz/$name.log"
seeds="$ROOT/tests/fuzz/seeds/$name"
mkdir -p "$corpus" "$findings"

args=(-max_total_time="$seconds" -max_len=4096 -timeout=30 -artifact_prefix="$findings/")
[ -n "$runs" ] && args+=(-runs="$runs")
dirs=("$corpus")
[ -d "$seeds" ] && dirs+=("$seeds")   # read, never written: new inputs go to $corpus

start=$SECONDS
if "$bin" "${args[@]}" "${dirs[@]}" >"$log" 2>&1; then
    n="$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -1)"
    printf '%s: ok (%s runs, %d s)\n' "$name" "${n:-?}" "$((SECONDS - start))"
    exit 0
fi
what="$(grep -m1 -E 'finding:|ERROR: (AddressSanitizer|libFuzzer|LeakSanitizer|UndefinedBehaviorSanitizer)|runtime error:' "$log")"
unit="$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)"
printf '%s: FINDING after %d s: %s\n    input: %s\n    log: %s\n' \
    "$name" "$((SECONDS - start))" "${what:-see the log}" "${unit:-none written}" "$log"
exit 1
