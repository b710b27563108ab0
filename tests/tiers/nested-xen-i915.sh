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
. tests/nested-xen/tier.sh
command -v gcc >/dev/null || { echo "FAIL nested-xen-i915: needs gcc (static i915-store for the guest)"; exit 1; }
tier_start nested-xen-i915
phase "build dom0, HVM and i915 guest initramfs"
NX_WITH_HVM=1 NX_WITH_I915=1 "$NX/mkroot.sh"
LOG=target/nested-xen/serial-i915.log
boot() {
    set +e
    # -smp 2: with one outer CPU a spinning guest vCPU starves dom0 (recipe pitfall 2).
    NX_LOG=$LOG NX_SMP=2 NX_TIMEOUT=${NX_I915_LIMIT:-2700} "$NX/run.sh" i915 i915-churn | tee target/nested-xen/summary-i915.txt
    rc=${PIPESTATUS[0]}
    set -e
}
phase "boot nested Xen: i915"
boot
# One retry, for one cause only: a guest (the i915 guest or the bystander) died of the
# outer emulator, not of the vGPU. xen_death (dom0/common.sh) tags such a death
# "[nested-TCG VMRUN]" from Xen's register dump: the CPU re-entered the guest with Xen's
# own state (RIP right after VMRUN in svm_asm_do_resume, cr2 = RIP), or the guest died on
# re-entry at the instruction after a LAPIC access that Xen emulated (an access no vGPU
# code sees). The first killed a guest with no vGPU at all in the tf-soak scenario
# (tests/nested-xen/README.md, "Triple faults under nested TCG"). A death with any other
# RIP fails the tier, with its symbol; every check still has to pass on the retry, and a
# bystander round that saw a wrong answer is never retried.
if [ "$rc" != 0 ] && grep -q '\[nested-TCG VMRUN\]' "$LOG" && ! grep -q 'GUEST-WATCH .*bad=' "$LOG"; then
    echo "RETRY nested-xen-i915: $(grep -o '[^]]*; Xen: [^;]*Triple fault[^[]*\[nested-TCG VMRUN\]' "$LOG" | head -n1)"
    mv "$LOG" target/nested-xen/serial-i915-first.log
    phase "boot nested Xen: i915 (retry; first log kept as serial-i915-first.log)"
    boot
fi
"$NX/extract.sh" "$LOG" target/nested-xen || true
grep -E '^\[[^]]*\] (G\| GUEST-(I915|STORE|DISPLAY|CYCLE|FINAL|IGT)|\[i915(-churn)? )' "$LOG" | tail -n 30 || true
phase "done rc=$rc; serial log: $LOG"
exit "$rc"
