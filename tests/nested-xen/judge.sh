#!/usr/bin/env bash
# Judge a nested-Xen serial log: judge.sh LOG QEMU_RC SCENARIO...
# Prints PASS/FAIL per scenario; exits non-zero on any FAIL line, a scenario without a
# marker, a missing DOM0-DONE, "Panic", a crashed domain, or a QEMU timeout (rc 124/137).
set -euo pipefail
LOG=$1; rc=$2; shift 2; SCENARIOS=("$@")
TMO=${NX_TIMEOUT:-?}
bad=0
report() { echo "$*"; }
if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then report "FAIL nested-xen: QEMU timed out after ${TMO}s"; bad=1; fi
grep -q 'DOM0-DONE' "$LOG" || { report "FAIL nested-xen: dom0 never reached DOM0-DONE"; bad=1; }
if grep -Eq 'Panic|Kernel panic' "$LOG"; then report "FAIL nested-xen: Panic in serial log: $(grep -m1 -E 'Panic|Kernel panic' "$LOG")"; bad=1; fi
if grep -Eq 'domain_crash|crashed' "$LOG"; then
    report "FAIL nested-xen: crashed domain: $(grep -m1 -E 'domain_crash|crashed' "$LOG")"; bad=1
fi
# (No `grep -q` at the end of a pipe here: under pipefail, grep quitting at the first match
# can kill the writer with SIGPIPE and turn a found marker into "not found".)
for s in "${SCENARIOS[@]}"; do
    if tr -d '\r' <"$LOG" | grep "] PASS $s\$" >/dev/null; then report "PASS $s"
    elif grep -q "] FAIL $s:" "$LOG"; then report "$(grep -m1 "] FAIL $s:" "$LOG" | sed 's/^\[[^]]*\] //')"; bad=1
    else report "FAIL $s: no PASS/FAIL marker in the serial log"; bad=1
    fi
done
exit $bad
