#!/usr/bin/env bash
# Tier: builds every fuzz target of fuzz/ (a standalone crate) on the stable toolchain and
# runs each one for a bounded number of iterations and seconds. Any crash, panic, failed
# assertion, leak or timeout fails the tier loudly, with the reproducer's path.
#
# By default the targets are built with SanitizerCoverage instrumentation through stable
# rustc flags (-Cpasses=sancov-module + -Cllvm-args, as cargo-fuzz does minus the nightly
# -Zsanitizer), so libFuzzer is coverage-guided; FUZZ_INSTRUMENT=0 uses the plain build of
# fuzz/README.md instead (random inputs only).
# Budget: FUZZ_SECONDS per target (default 8; 11 targets: under 2 minutes of fuzzing),
# FUZZ_RUNS iterations at most (default 500000).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

fail() { echo "fuzz-build: FAIL: $*" >&2; exit 1; }

SECONDS_PER_TARGET="${FUZZ_SECONDS:-8}"
RUNS="${FUZZ_RUNS:-500000}"
command -v cargo >/dev/null || fail "cargo not found"
command -v c++ >/dev/null || command -v g++ >/dev/null || command -v clang++ >/dev/null \
    || fail "a C++ compiler is needed to build libFuzzer (libfuzzer-sys)"

if [ "${FUZZ_INSTRUMENT:-1}" = 1 ]; then
    HOST=$(rustc -vV | sed -n 's/^host: //p')
    [ -n "$HOST" ] || fail "cannot tell the host triple from rustc -vV"
    echo "fuzz-build: building fuzz targets (release, coverage-instrumented, $HOST)"
    # --target keeps the flags off build scripts and proc macros.
    (cd fuzz && RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
        -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
        -Cllvm-args=-sanitizer-coverage-pc-table -Cllvm-args=-sanitizer-coverage-trace-compares \
        --cfg fuzzing" cargo build --release --locked --bins --target "$HOST" --target-dir target/cov) \
        || fail "fuzz targets do not build (instrumented)"
    BIN_DIR="fuzz/target/cov/$HOST/release"
else
    echo "fuzz-build: building fuzz targets (release, uninstrumented)"
    (cd fuzz && cargo build --release --locked --bins) || fail "fuzz targets do not build"
    BIN_DIR="fuzz/target/release"
fi

# Every [[bin]] of fuzz/Cargo.toml must have a source file and vice versa.
mapfile -t TARGETS < <(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^xengt-fuzz$')
[ "${#TARGETS[@]}" -gt 0 ] || fail "no fuzz targets listed in fuzz/Cargo.toml"
for src in fuzz/fuzz_targets/*.rs; do
    name=$(basename "$src" .rs)
    printf '%s\n' "${TARGETS[@]}" | grep -x "$name" >/dev/null || fail "$src is not a [[bin]] in fuzz/Cargo.toml"
done

WORK=$(mktemp -d /tmp/xengt-fuzz.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
failed=()
for t in "${TARGETS[@]}"; do
    bin="$BIN_DIR/$t"
    [ -x "$bin" ] || fail "$bin was not built"
    mkdir -p "$WORK/$t/corpus" "$WORK/$t/artifacts"
    # Seed with the checked-in corpus, if any (read-only: new inputs go to $WORK).
    seeds=()
    [ -d "fuzz/corpus/$t" ] && seeds=("fuzz/corpus/$t")
    start=$(date +%s)
    # Inputs of every length up to 8 KiB from the start (no slow length ramp-up: the run
    # is short, and without instrumentation libFuzzer would never grow inputs at all).
    if "$bin" -runs="$RUNS" -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
        -len_control=0 -max_len=8192 -seed=1 -print_final_stats=1 -artifact_prefix="$WORK/$t/artifacts/" \
        "$WORK/$t/corpus" "${seeds[@]}" >"$WORK/$t/log" 2>&1; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$WORK/$t/log" | tail -1)
        echo "fuzz-build: $t: ok (${runs:-?} runs, $(( $(date +%s) - start ))s)"
    else
        echo "fuzz-build: $t: CRASH" >&2
        tail -40 "$WORK/$t/log" >&2
        mkdir -p "$ROOT/fuzz/artifacts/$t"
        cp "$WORK/$t/artifacts/"* "$ROOT/fuzz/artifacts/$t/" 2>/dev/null || true
        echo "fuzz-build: reproducer(s) in fuzz/artifacts/$t/ (replay: $bin <file>)" >&2
        failed+=("$t")
    fi
done
[ "${#failed[@]}" -eq 0 ] || fail "crashing targets: ${failed[*]}"
echo "fuzz-build: all ${#TARGETS[@]} targets ran clean"
