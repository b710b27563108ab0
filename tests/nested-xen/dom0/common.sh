# Helpers sourced by every dom0 scenario script (busybox sh).
export PATH=/bin:/sbin:/usr/bin:/usr/sbin:/usr/lib/xen-4.17/bin
ST=/run/xengt-test          # state shared between the scenarios of one boot
CONSOLE_DIR=/var/log/xen/console
up() { cut -d' ' -f1 /proc/uptime; }
say() { echo "[$NX_SCENARIO $(up)] $*"; }
# fail REASON: record the reason for dom0/init's FAIL line and stop the scenario.
fail() { say "failing: $*"; echo "$*" >"$NX_REASON"; exit 1; }
need() { [ -x "/usr/sbin/$1" ] || fail "$1 is not in the dom0 image (cargo build --release failed?)"; }
# The guest console log kept by xenconsoled.
# (HVM guests log their ttyS0 to /var/log/xen/NAME-serial.log instead.)
console_log() {
    if [ -e "/var/log/xen/$1-serial.log" ]; then echo "/var/log/xen/$1-serial.log"; else echo "$CONSOLE_DIR/guest-$1.log"; fi
}
# wait_console NAME PATTERN SECONDS: wait until the guest console log matches PATTERN.
wait_console() {
    local i=0 log; log=$(console_log "$1")
    while [ $i -lt "$3" ]; do
        grep -q "$2" "$log" 2>/dev/null && return 0
        sleep 1; i=$((i + 1))
    done
    return 1
}
# guest_field NAME MARKER KEY: value of KEY=... on the last console line starting with MARKER.
guest_field() {
    grep "^$2 " "$(console_log "$1")" 2>/dev/null | tail -n1 | tr ' ' '\n' | sed -n "s/^$3=//p" | tr -d '\r'
}
# wait_gone DOMID SECONDS: wait until the domain has left XenStore (no xl polling: too costly).
wait_gone() {
    local i=0
    while [ $i -lt "$2" ]; do
        xenstore-exists "/local/domain/$1" 2>/dev/null || return 0
        sleep 1; i=$((i + 1))
    done
    return 1
}
# ksym ADDR: symbol+offset for a text address (16 hex digits): the dom0 kernel's from
# /proc/kallsyms (guests boot the dom0 kernel image with nokaslr, so their RIPs name the
# same symbols), or Xen's own for a Xen address (ffff82d0...), from the xen-syms map of
# the hypervisor's -dbg package (mkroot.sh puts it at /boot/xen-syms.map).
# Hex strings of equal length compare like the numbers (busybox awk has only doubles).
ksym() {
    local map=/proc/kallsyms
    case $1 in ffff82d0*) map=/boot/xen-syms.map ;; esac
    awk -v w="$1" '{ a = $1; sub(/^0x/, "", a) }
        $2 ~ /^[tTwW]$/ && length(a) == 16 && a <= w && a > best { best = a; name = $3 }
        END { if (name != "") print name " " best }' "$map" 2>/dev/null | {
        read -r name base || return 0
        printf '%s+0x%x\n' "$name" $((0x${1#????????} - 0x${base#????????}))
    }
}
# xen_death DOMID: what Xen logged of the domain's end: its triple-fault or crash line and,
# for a triple fault, the guest RIP, RSP and CR2 of Xen's register dump with the symbol
# of RIP. Empty when Xen logged nothing about the domain.
xen_death() {
    local d=$1 line dump rip what
    xl dmesg >/tmp/xl-dmesg.txt 2>/dev/null
    line=$(grep -E "d${d}v[0-9]+ (Triple fault|.*crash)" /tmp/xl-dmesg.txt | tail -n1)
    [ -n "$line" ] || { grep -E "d${d}v[0-9]" /tmp/xl-dmesg.txt | tail -n1; return 0; }
    dump=$(sed -n "/d${d}v[0-9]* Triple fault/,\$p" /tmp/xl-dmesg.txt | head -n 12)
    rip=$(echo "$dump" | grep -m1 -o 'RIP:[^[]*\[<[0-9a-f]*>\]' | sed 's/.*\[<\([0-9a-f]*\)>\]/\1/')
    printf '%s' "$line" | sed 's/^(XEN) //'
    if [ -n "$rip" ]; then
        what=$(ksym "$rip")
        # The two deaths of the outer emulator (README.md, "Triple faults under nested TCG"):
        # the CPU re-entering the guest with Xen's own state (RIP right after Xen's VMRUN),
        # or the guest dying on re-entry right after a LAPIC access that Xen emulated.
        case $rip:$what in
            ffff82d0*:svm_asm_do_resume+*) what="Xen's $what: the saved guest state is Xen's own [nested-TCG VMRUN]" ;;
            ffff82d0*) what="Xen's $what" ;;
            *:native_apic_mem_write+0x8 | *:native_apic_mem_read+0x8)
                what="$what, the instruction after its LAPIC access that Xen emulated [nested-TCG VMRUN]" ;;
        esac
        printf '; RIP %s = %s; %s' "$rip" "$what" \
            "$(echo "$dump" | grep -o -E '(rsp|cr2): [0-9a-f]*' | tr '\n' ' ')"
    fi
    echo
}
# Number as decimal (accepts 0x... or decimal).
dec() { printf '%d' "$1" 2>/dev/null; }
daemon_alive() { [ -s $ST/xengtd.pid ] && kill -0 "$(cat $ST/xengtd.pid)" 2>/dev/null; }
show_console() { say "--- console of $1:"; sed 's/^/    | /' "$(console_log "$1")" 2>/dev/null | tail -n "${2:-40}"; }

# ---- xengtd / xengt-ctl interface (see README.md "What the scenarios assume")
VGPU_NAME=vgpu1
domid_of_test_guest() { cat $ST/domid 2>/dev/null; }
# Normalise a JSON number or "0x..." string to decimal.
jnum() { jq -r "$1 // empty" "$2" | { read -r v; [ -n "$v" ] && [ "$v" != null ] && printf '%d' "$v"; }; }
# vgpus_json FILE: the vGPU array of `xengt-ctl list --json` (a bare array of VgpuInfo,
# as in the daemon branch; {"vgpus":[...]} also accepted).
vgpus_json() { jq -c 'if type == "array" then . else (.vgpus // []) end' "$1"; }
# avail_now: free capacity, the sum of available_instances over `xengt-ctl types --json`.
avail_now() {
    xengt-ctl types --json >/tmp/types.json 2>/tmp/types.err || return 1
    jq -r 'if type == "array" then ([.[].available_instances] | add) else (.available_instances // empty) end' /tmp/types.json
}
# Field paths of `xengt-ctl info --json` (VgpuInfo); the alternatives are the issue's names.
J_LOW_BASE='(.low_gm.base // .windows.low.base)'
J_LOW_SIZE='(.low_gm.size // .windows.low.size)'
J_HIGH_BASE='(.high_gm.base // .windows.high.base)'
J_HIGH_SIZE='(.high_gm.size // .windows.high.size)'
J_FENCES='(.fence_count // (.fences | if type == "object" then .count else . end))'
J_DROPPED='(.counters.ggtt_writes_dropped // .counters.ggtt_dropped)'
# The vGPU's backend directory in XenStore (xen-abi.md §5.3: backend-only node).
backend_dir() {
    local d=$1 t
    for t in vgt vgpu xengt; do
        xenstore-exists "/local/domain/0/backend/$t/$d" 2>/dev/null && { echo "/local/domain/0/backend/$t/$d/0"; return 0; }
    done
    return 1
}
info_json() { xengt-ctl info "$1" --json >"$2" 2>"$2.err"; }
# info_vars FILE: one jq run (each costs seconds under nested TCG) setting I_BAR0 I_LB I_LS
# I_HB I_HS I_FENCES I_DROPPED to decimal values, empty where the field is absent.
info_vars() {
    local line
    line=$(jq -r "[.bar0, $J_LOW_BASE, $J_LOW_SIZE, $J_HIGH_BASE, $J_HIGH_SIZE, $J_FENCES, $J_DROPPED]
        | map(if . == null then \"-\" else tostring end) | join(\" \")" "$1") || return 1
    set -- $line
    [ $# -eq 7 ] || return 1
    I_BAR0=$(num_or_empty "$1"); I_LB=$(num_or_empty "$2"); I_LS=$(num_or_empty "$3")
    I_HB=$(num_or_empty "$4"); I_HS=$(num_or_empty "$5"); I_FENCES=$(num_or_empty "$6")
    I_DROPPED=$(num_or_empty "$7")
}
# publish_params DOMID: read the vGPU's BAR0 and GGTT windows from `xengt-ctl info --json`
# and publish them where the PVH test guest's vgpu.sh waits for them
# (/local/domain/D/data/xengt-test/params, readable by the guest). Leaves the info in
# $ST/info-D.json and the I_* variables set; returns 1 with a reason on stdout otherwise.
publish_params() {
    local d=$1 p=/local/domain/$1/data/xengt-test
    info_json "$d" "$ST/info-$d.json" || { echo "xengt-ctl info $d --json failed: $(tail -n1 "$ST/info-$d.json.err")"; return 1; }
    info_vars "$ST/info-$d.json" || { echo "cannot parse xengt-ctl info --json of $d"; return 1; }
    [ -n "$I_BAR0" ] && [ "$I_BAR0" -gt 0 ] || { echo "info of $d has no non-zero bar0"; return 1; }
    [ -n "$I_LB" ] && [ -n "$I_LS" ] && [ -n "$I_HB" ] && [ -n "$I_HS" ] || { echo "info of $d lacks low_gm/high_gm {base,size}"; return 1; }
    xenstore-write "$p/params" "bar0=$I_BAR0 low_base=$I_LB low_size=$I_LS high_base=$I_HB high_size=$I_HS" ||
        { echo "cannot publish test parameters at $p"; return 1; }
    xenstore-chmod -r "$p" "n$d" 2>/dev/null || xenstore-chmod "$p/params" "n$d"
}
num_or_empty() { [ "$1" = - ] || printf '%d' "$1" 2>/dev/null; }
# start_daemon: start xengtd (once per boot) as the installed unit does, and wait until
# xengt-ctl answers. dom0 has no systemd: this runs the unit's ExecStart= in its
# RuntimeDirectory, so the test exercises the packaged unit, config and paths.
UNIT=/lib/systemd/system/xengtd.service
start_daemon() {
    need xengtd; need xengt-ctl
    [ -s $UNIT ] || fail "the xengt package is not installed in dom0 ($UNIT missing)"
    [ -s /etc/xengt/xengtd.json ] || fail "the xengt package did not install /etc/xengt/xengtd.json"
    if ! daemon_alive; then
        local exec_line; exec_line=$(sed -n 's/^ExecStart=//p' $UNIT)
        [ -n "$exec_line" ] || fail "no ExecStart= in $UNIT"
        mkdir -p /run/xengt; chmod 0700 /run/xengt
        # shellcheck disable=SC2086
        $exec_line ${XENGTD_EXTRA:-} >/var/log/xengtd.log 2>&1 &
        echo $! >$ST/xengtd.pid
    fi
    local i=0
    until xengt-ctl list --json >/tmp/list0.json 2>/tmp/list0.err && jq -e 'type == "array" or type == "object"' /tmp/list0.json >/dev/null 2>&1; do
        daemon_alive || { tail -n 20 /var/log/xengtd.log; fail "xengtd --backend xen exited: $(tail -n1 /var/log/xengtd.log)"; }
        i=$((i + 1)); [ $i -lt 60 ] || fail "xengt-ctl list --json never gave JSON: $(cat /tmp/list0.json /tmp/list0.err | tail -n1)"
        sleep 1
    done
    daemon_alive || fail "xengtd --backend xen exited: $(tail -n1 /var/log/xengtd.log)"
}
# dm_logs: the device-model (qemu-xen) and libxl logs, for HVM failures.
dm_logs() { for f in /var/log/xen/qemu-dm-*.log /var/log/xen/xl-*.log; do [ -s "$f" ] && { say "--- $f"; tail -n 30 "$f"; }; done; }
# b64_out NAME FILE: FILE (gzip'ed) base64 on the console between markers; the host's
# extract step (tiers/nested-xen-i915.sh) decodes it into target/nested-xen/NAME.
b64_out() {
    echo "=== B64-BEGIN $1"; gzip -c "$2" | base64; echo "=== B64-END $1"
}

# stream_guest LOG: print the new lines of an HVM guest's serial LOG (prefix "G| ") and
# xengtd's new warnings/errors ("X| ") since the last call; positions live in nS and nT,
# which a later scenario can take over through $ST/stream.pos.
stream_guest() {
    local n
    n=$(wc -l <"$1" 2>/dev/null || echo 0)
    [ "$n" -gt "${nS:-0}" ] && sed -n "$((${nS:-0} + 1)),${n}p" "$1" | tr -d '\r' | sed 's/^/G| /'; nS=$n
    n=$(wc -l </var/log/xengtd.log)
    [ "$n" -gt "${nT:-0}" ] && sed -n "$((${nT:-0} + 1)),${n}p" /var/log/xengtd.log | grep -E 'WARN|ERROR' | head -n 20 | sed 's/^/X| /'; nT=$n
    echo "$nS $nT" >$ST/stream.pos
}
# vgpu_leftovers DOMID BACKEND_DIR: what is left of a destroyed guest's vGPU, as a list of
# words (empty when nothing is): its backend node, xengtd's record, its /local/domain
# directory, a listing by xengt-ctl, an answer to xengt-ctl info, a "(null)" zombie domain.
vgpu_leftovers() {
    local d=$1 be=$2 left="" bd
    [ -n "$be" ] && xenstore-exists "$be" 2>/dev/null && left="$left backend-node:$be"
    bd=$(backend_dir "$d") && left="$left backend-dir:${bd%/0}"
    xenstore-exists "/xengt/vgpu/$d" 2>/dev/null && left="$left record:/xengt/vgpu/$d"
    xenstore-exists "/local/domain/$d" 2>/dev/null && left="$left /local/domain/$d"
    if xengt-ctl list --json >/tmp/list-left.json 2>/dev/null; then
        vgpus_json /tmp/list-left.json | jq -e --argjson d "$d" 'any(.[]; .domid == $d)' >/dev/null 2>&1 && left="$left listed"
    else
        left="$left list-failed"
    fi
    xengt-ctl info "$d" --json >/dev/null 2>&1 && left="$left info-answers"
    xl list 2>/dev/null | grep -q '^(null)' && left="$left zombie-domain"
    echo "$left"
}
# wait_no_leftovers DOMID BACKEND_DIR SECONDS: until vgpu_leftovers is empty; 1 (with the
# list in $LEFT) if it never is.
wait_no_leftovers() {
    local i=0
    while :; do
        LEFT=$(vgpu_leftovers "$1" "$2")
        [ -z "$LEFT" ] && return 0
        i=$((i + 1)); [ $i -lt "$3" ] || return 1
        sleep 1
    done
}
# xengtd_fds: number of file descriptors xengtd holds open.
xengtd_fds() { ls "/proc/$(cat $ST/xengtd.pid)/fd" 2>/dev/null | wc -l; }
