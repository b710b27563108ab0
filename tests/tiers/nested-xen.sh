#!/usr/bin/env bash
# Tier: nested Xen. Boots Xen 4.17 + a Debian dom0 under QEMU TCG (no KVM needed), runs the
# vGPU scenarios against the real xengtd/xengt-ctl inside dom0, and fails on any FAIL line,
# missing marker, Panic or crashed domain. Never skips silently: if this machine cannot run
# it, it fails with the reason. Artifacts: target/nested-xen/{serial.log,summary.txt}.
# Env: XENGT_NESTED_CACHE (download cache, default /var/cache/xengt-nested),
#      XENGT_NESTED_SCENARIOS (override the list), XENGT_NESTED_HVM=0 (leave out the HVM
#      guest: hvm-smoke, ~160 s, and qemu-xen in dom0).
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/nested-xen/tier.sh
tier_start nested-xen

phase "build dom0 and guest initramfs"
scen="xlinfo pvh-hello hotplug pvinfo ggtt fuzz-bars teardown"
if [ "${XENGT_NESTED_HVM:-1}" = 1 ]; then scen="$scen hvm-smoke"; fi
scen=${XENGT_NESTED_SCENARIOS:-$scen}
case " $scen " in *" hvm-"*) export NX_WITH_HVM=1 ;; esac
"$NX/mkroot.sh"
phase "boot nested Xen: $scen"
set +e
# shellcheck disable=SC2086
"$NX/run.sh" $scen | tee target/nested-xen/summary.txt
rc=${PIPESTATUS[0]}
set -e
case " $scen " in *" hvm-smoke "*) ;; *) echo "NOTE nested-xen: hvm-smoke was not run (XENGT_NESTED_HVM=0 or XENGT_NESTED_SCENARIOS)" ;; esac
phase "done rc=$rc; serial log: target/nested-xen/serial.log"
exit "$rc"
