#!/usr/bin/env bash
# Boot Xen + dom0 under QEMU TCG once, run the scenarios given as arguments inside dom0, and
# judge the serial log ($NX_OUT/serial.log, kept as the artifact).
# Fails on: any "FAIL <name>" line, a scenario without a PASS/FAIL marker, a missing
# DOM0-DONE, "Panic" in the log, a crashed domain, or the QEMU timeout.
# Env: NX_TIMEOUT (seconds, default derived from the scenario budget), NX_SMP (default 1),
# NX_QEMU, NX_QEMU_LDPATH, NX_QEMU_FW (another outer QEMU, its libraries and firmware
# directory; default the one of XENGT_NESTED_QEMU_SUITE, lib.sh), NX_CPU (default qemu64,+svm,+npt),
# NX_DOM0_EXTRA (more dom0 command-line words, e.g. soak=4:1:1200 for tf-soak; its
# SECONDS as NX_SOAK_SECONDS sizes the scenario's budget).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
[ $# -gt 0 ] || nx_die "usage: run.sh SCENARIO..."
SCENARIOS=("$@")
for f in xen vmlinux dom0.cpio fw; do [ -e "$NX_OUT/$f" ] || nx_die "$NX_OUT/$f missing (run mkroot.sh)"; done
[ -x "${NX_QEMU:-$(nx_qemu)}" ] || nx_die "no outer QEMU at ${NX_QEMU:-$(nx_qemu)} (run fetch.sh)"

# Measured wall time of each scenario under nested TCG on the 2-core box (README.md), in
# seconds (vGPU scenarios: measured with the daemon branch's xengtd, see README.md).
budget() {
    case $1 in
        xlinfo) echo 2 ;; pvh-hello) echo 60 ;; hvm-hello) echo 110 ;; hotplug) echo 50 ;;
        pvinfo) echo 55 ;; ggtt) echo 8 ;; fuzz-bars) echo 15 ;; teardown) echo 14 ;;
        hvm-smoke) echo 160 ;; i915) echo 600 ;; i915-churn) echo 300 ;;
        tf-soak) echo $(( ${NX_SOAK_SECONDS:-1200} / 3 + 200 )) ;; *) echo 60 ;;
    esac
}
total=25   # QEMU start -> dom0 scenarios, plus poweroff
for s in "${SCENARIOS[@]}"; do total=$((total + $(budget "$s"))); done
TMO=${NX_TIMEOUT:-$((total * 3))}

QEMU="${NX_QEMU:-$(nx_qemu)}"
CPU="${NX_CPU:-qemu64,+svm,+npt}"
LDP=${NX_QEMU_LDPATH:+$NX_QEMU_LDPATH:}$(nx_qemu_ldpath)$(nx_ldpath)
NX_QEMU_FW=${NX_QEMU_FW:-$(nx_qemu_fw)}
LOG="${NX_LOG:-$NX_OUT/serial.log}"
# dom0 gets "name:timeout+..." ('+' because a comma would split QEMU's module list); each
# scenario may take 3x its budget (at least 60 s).
list=
for s in "${SCENARIOS[@]}"; do
    t=$(($(budget "$s") * 3)); [ $t -ge 60 ] || t=60
    list="${list:+$list+}$s:$t"
done
XEN_ARGS="console=com1 com1=115200,8n1 dom0_mem=1024M,max:1024M loglvl=all guest_loglvl=all console_timestamps=boot"
DOM0_ARGS="console=hvc0 earlyprintk=xen nokaslr quiet xtest=$list${NX_DOM0_EXTRA:+ $NX_DOM0_EXTRA}"
case "$DOM0_ARGS" in *,*) nx_die "no commas allowed in the dom0 command line: $DOM0_ARGS" ;; esac

nx_log "booting Xen (timeout ${TMO}s) with $(LD_LIBRARY_PATH=$LDP "$QEMU" --version 2>/dev/null | head -n1 || echo "$QEMU"), -cpu $CPU: ${SCENARIOS[*]}"
start=$EPOCHREALTIME; start_us=${start/./}
set +e
LD_LIBRARY_PATH=$LDP timeout --kill-after=10 "$TMO" "$QEMU" \
    ${NX_QEMU_FW:+-L "$NX_QEMU_FW"} -L "$NX_OUT/fw" \
    -accel tcg -machine q35 -cpu "$CPU" -smp "${NX_SMP:-1}" -m 3072 \
    -display none -serial stdio -monitor none -no-reboot -net none \
    -kernel "$NX_OUT/xen" -append "$XEN_ARGS" \
    -initrd "$NX_OUT/vmlinux $DOM0_ARGS,$NX_OUT/dom0.cpio" </dev/null 2>&1 |
    while IFS= read -r line; do
        line=${line//$'\r'/}
        now=${EPOCHREALTIME/./}; ds=$(( (now - start_us) / 100000 ))
        printf '[%5d.%d] %s\n' $((ds / 10)) $((ds % 10)) "$line"
        case $line in PASS\ *|FAIL\ *|DOM0-*|===\ SCENARIO*) echo "  serial: $line" >&2 ;; esac
    done >"$LOG"
rc=${PIPESTATUS[0]}
set -e
wall=$(bc <<<"$EPOCHREALTIME - $start")
echo "HOST wall=${wall}s qemu_rc=$rc" >>"$LOG"
nx_log "QEMU exited rc=$rc after ${wall}s; log: $LOG"

NX_TIMEOUT=$TMO exec "$NX_DIR/judge.sh" "$LOG" "$rc" "${SCENARIOS[@]}"
