#!/usr/bin/env bash
# The one test command: every tier, in order. Installs what it needs itself (idempotent).
# Fails loudly on the first failing tier; never skips a tier silently.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

# Each step's wall time, printed at the end (also when a step fails).
times=(); cur=; t_step=$SECONDS; t_all=$SECONDS
lap() { [ -z "$cur" ] || times+=("$(printf '%6ss  %s' $((SECONDS - t_step)) "$cur")"); }
step() { lap; cur="$*"; t_step=$SECONDS; printf '\n==> %s\n' "$*"; }
report() {
    rc=$?; lap; cur=
    printf '\n==> wall time per step (rc=%s, total %ss)\n' "$rc" $((SECONDS - t_all))
    printf '%s\n' "${times[@]}"
}
trap report EXIT

step "toolchain components"
rustup component add rustfmt clippy >/dev/null 2>&1 || true
command -v cargo-clippy >/dev/null || { echo "FAIL: clippy is not available"; exit 1; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (deny warnings)"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test --workspace"
cargo test --workspace

for tier in tests/tiers/*.sh; do
    [ -e "$tier" ] || continue
    step "tier: $tier"
    bash "$tier"
done

step "all tiers passed"
cur=
