#!/usr/bin/env bash
# Tier: the real Debian i915 in a nested-Xen HVM guest against `xengtd --backend xen`
# (issue 8; scenarios tests/nested-xen/dom0/scenarios/{i915,i915-churn}.sh: stages a-e, then
# the bad input: five load/unload cycles and a destroy mid-probe beside a bystander guest).
# Its own tier because one HVM boot with seven i915 loads takes minutes under TCG
# (tests/nested-xen/README.md, timings); its own limit: NX_I915_LIMIT seconds of QEMU time
# (default 2700).
# Artifacts: target/nested-xen/{serial-i915.log,summary-i915.txt,i915-screen.png,i915-mmio.trace}.
set -euo pipefail
cd "$(dirname "$0")/../.."
NX=tests/nested-xen
t0=$SECONDS
phase() { printf '[nested-xen-i915 tier] %s (t=%ss)\n' "$*" $((SECONDS - t0)); }
command -v apt-get >/dev/null && command -v dpkg >/dev/null ||
    { echo "FAIL nested-xen-i915: needs a Debian 12 host (apt-get, dpkg)"; exit 1; }
command -v gcc >/dev/null || { echo "FAIL nested-xen-i915: needs gcc (static i915-store for the guest)"; exit 1; }
phase "cargo build --release (xengtd, xengt-ctl)"
cargo build --release -p xengt -p xengt-tools 2>&1 | tail -n 3 ||
    { echo "FAIL nested-xen-i915: cargo build --release failed"; exit 1; }
phase "fetch Debian packages"
"$NX/fetch.sh"
phase "build dom0, HVM and i915 guest initramfs"
NX_WITH_HVM=1 NX_WITH_I915=1 "$NX/mkroot.sh"
phase "boot nested Xen: i915"
set +e
# -smp 2: with one outer CPU a spinning guest vCPU starves dom0 (recipe pitfall 2).
NX_LOG=target/nested-xen/serial-i915.log NX_SMP=2 NX_TIMEOUT=${NX_I915_LIMIT:-2700} "$NX/run.sh" i915 i915-churn | tee target/nested-xen/summary-i915.txt
rc=${PIPESTATUS[0]}
set -e
"$NX/extract.sh" target/nested-xen/serial-i915.log target/nested-xen || true
grep -E '^\[[^]]*\] (G\| GUEST-(I915|STORE|DISPLAY|CYCLE|FINAL)|\[i915(-churn)? )' target/nested-xen/serial-i915.log | tail -n 30 || true
phase "done rc=$rc; serial log: target/nested-xen/serial-i915.log"
exit "$rc"
