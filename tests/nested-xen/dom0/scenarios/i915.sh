# i915 (issue 8): an HVM guest (qemu-xen, vga="none", xen_platform_pci=0) whose vGPU at
# 00:02.0 is served by `xengtd --backend xen` (created by `xengt-ctl create` of an xl config
# with vgt=1; HVM => backend key ggtt-backing = ram) loads Debian's own i915 twice: with
# enable_guc=0 disable_display=1, then with the display. Stages, each needing the previous:
#   a detected   "Virtual GPU for Intel GVT-g detected" + "VGT balloon successfully"
#   b probe      "Initialized i915" and /sys/class/drm/card0
#   c not-wedged debugfs i915_wedged reads 0
#   d workload   i915-store: MI_STORE_DWORD_IMM via EXECBUFFER2, value read back; and
#                (pass 1) i-g-t's gem_exec_nop benchmark exits 0 with a time per batch
#   e display    pass 2 reaches a/b/c/d, a dumb-buffer modeset shows colour bars on the
#                primary plane, `xengt-ctl screenshot` gives a PNG
# FAIL names the first stage that failed. Artifacts (base64 between markers, decoded by the
# host): the screenshot and xengtd's MMIO trace of the guest (--mmio-trace, one file per
# domain).
# Before the i915 guest, a "bystander" HVM guest with its own vGPU is created (it prints
# GUEST-WATCH rounds): the next scenario, i915-churn, checks it stayed unaffected.
# With I915CYCLES/I915FINAL in i915.cfg the guest goes on after GUEST-I915-DONE and this
# scenario leaves it running for i915-churn ($ST/i915-keep); otherwise it destroys it.
. /scenarios/common.sh
XENGTD_EXTRA="--mmio-trace /var/log/xengtd-mmio-%d.trace" start_daemon
N=hvmi915
avail_now >$ST/avail-start || fail "setup: xengt-ctl types --json failed: $(tail -n1 /tmp/types.err)"
rm -f $ST/i915-keep $ST/bystander-domid $ST/bystander-error
bystander() {
    local w i=0
    xengt-ctl create /guest/bystander.cfg >/tmp/create-by.out 2>&1 || { echo "xengt-ctl create bystander.cfg: $(tail -n1 /tmp/create-by.out)"; return 1; }
    w=$(xl domid bystander 2>/dev/null) || { echo "no domain bystander after xengt-ctl create"; return 1; }
    echo "$w" >$ST/bystander-domid
    backend_dir "$w" >$ST/bystander-backend || { echo "no backend node for the bystander $w"; return 1; }
    # Its first access (hvmloader's PCI scan) opens its trace file: wait for that, so the
    # fd baseline below includes it. (Whether it answers correctly is i915-churn's check.)
    until [ -e "/var/log/xengtd-mmio-$w.trace" ]; do
        i=$((i + 1)); [ $i -lt 180 ] || { echo "no access from the bystander $w in 180s"; return 1; }
        sleep 1
    done
}
if why=$(bystander); then
    say "bystander domain $(cat $ST/bystander-domid) created (HVM)"
else
    say "bystander: $why"; echo "$why" >$ST/bystander-error
fi
# Baselines for i915-churn, with every vGPU but the i915 guest's in place.
avail_now >$ST/avail-before-i915; xengtd_fds >$ST/fds-before-i915
say "before the i915 guest: available_instances=$(cat $ST/avail-before-i915) xengtd fds=$(cat $ST/fds-before-i915)"
t0=$(up)
xengt-ctl create /guest/i915.cfg >/tmp/create-i915.out 2>&1 || { cat /tmp/create-i915.out; dm_logs; fail "setup: xengt-ctl create i915.cfg failed: $(tail -n1 /tmp/create-i915.out)"; }
D=$(xl domid $N 2>/dev/null) || fail "setup: no domain $N after xengt-ctl create"
keep=0
# Any failure below destroys the guest, unless it was handed over to i915-churn.
trap '[ "$keep" = 1 ] || xl destroy "$D" 2>/dev/null' EXIT
TRACE=/var/log/xengtd-mmio-$D.trace
say "HVM domain $D created and unpaused in $(echo "$(up) - $t0" | bc 2>/dev/null || echo ?)s"
info_json "$D" /tmp/info-i915.json || fail "setup: xengt-ctl info $D failed"
gb=$(jq -r '.ggtt_backing // "absent"' /tmp/info-i915.json)
[ "$gb" = ram ] || fail "setup: GGTT backing is '$gb', want ram for an HVM guest"
L=/var/log/xen/$N-serial.log; nS=0; nT=0; i=0; shot=; lastS=0; still=0
while xenstore-exists /local/domain/$D 2>/dev/null; do
    sleep 3; i=$((i + 3)); stream_guest "$L"
    if [ -z "$shot" ] && grep -q '^GUEST-DISPLAY-READY' "$L" 2>/dev/null; then
        shot=none
        if xengt-ctl screenshot "$D" /tmp/i915-screen.png >/tmp/shot.out 2>&1; then shot=ok; fi
        say "screenshot: $shot: $(tail -n1 /tmp/shot.out)"
        xengt-ctl info "$D" --json >/tmp/info-shot.json 2>&1 && say "plane: $(jq -c '.plane // .plane_error' /tmp/info-shot.json)"
    fi
    grep -q '^GUEST-I915-DONE' "$L" 2>/dev/null && break
    # The trace of pass 1 alone (probe + workload of the headless pass) is the fixture:
    # taken once the workload reported (or pass 1 ended without a card to run it on).
    [ -e /tmp/trace-pass1 ] || ! grep -qE '^GUEST-(STORE|I915-RMMOD|I915-INSMOD pass=2)' "$L" 2>/dev/null || cp "$TRACE" /tmp/trace-pass1
    # (silence counts only once /init has spoken: the kernel boots quietly for minutes)
    if [ "$nS" -gt "$lastS" ]; then lastS=$nS; still=0; elif [ "$nS" -gt 0 ]; then still=$((still + 3)); fi
    if [ $((i % 60)) = 0 ] || { [ "$still" -ge 60 ] && [ $((still % 30)) = 0 ]; }; then
        say "waiting: ${i}s, serial $nS lines (no new line for ${still}s), trace $(wc -l <$TRACE 2>/dev/null) lines; hottest of the last 600:"
        tail -n 600 "$TRACE" | sort | uniq -c | sort -rn | head -n 6 | sed 's/^/    T| /'
    fi
    # A guest whose serial stays silent this long is stuck in the kernel (its /init prints
    # every 3 s): stop waiting so the trace still gets out.
    [ "$still" -lt "${I915_STALL:-150}" ] || { say "guest serial silent for ${still}s: stuck"; break; }
    [ $i -lt "${I915_WAIT:-900}" ] || { say "guest still running after ${i}s"; break; }
done
stream_guest "$L"
xenstore-exists "/local/domain/$D" 2>/dev/null || grep -q '^GUEST-I915-DONE' "$L" ||
    say "the guest died after ${i}s; Xen: $(xen_death "$D")"
say "guest finished after ${i}s; xengtd counters: $(xengt-ctl info "$D" --json 2>/dev/null | jq -c .counters)"
daemon_alive || say "xengtd died: $(tail -n 3 /var/log/xengtd.log)"
if [ -s /tmp/trace-pass1 ]; then
    b64_out i915-mmio-pass1.trace /tmp/trace-pass1
    tail -n 3000 "$TRACE" >/tmp/trace-tail; b64_out i915-mmio-tail.trace /tmp/trace-tail
elif [ -s $TRACE ]; then
    head -n 40000 "$TRACE" >/tmp/trace-head; b64_out i915-mmio.trace /tmp/trace-head
fi
[ "$shot" = ok ] && b64_out i915-screen.png /tmp/i915-screen.png
gl() { grep "^GUEST-I915 pass=$1 " "$L" | tail -n1; }
has() { echo "$1" | grep -q "$2"; }
stage() { # stage PASSNO PREFIX: check a..d of one pass
    local g; g=$(gl "$1")
    [ -n "$g" ] || fail "$2a detected: no GUEST-I915 pass=$1 line ($(grep -c '^GUEST-' "$L") guest markers; last: $(grep '^GUEST-' "$L" | tail -n1))"
    has "$g" 'detected=1 balloon=1' || fail "$2a detected: $g"
    has "$g" 'initialized=1 card0=1' || fail "$2b probe: $g"
    has "$g" 'wedged=0' || fail "$2c not-wedged: $g"
    [ "$(grep -c "^GUEST-STORE result=ok" "$L")" -ge "$1" ] || fail "$2d workload: $(grep "^GUEST-STORE" "$L" | tail -n1)"
    say "pass $1: $g"
}
igt() { # i-g-t's gem_exec_nop (pass 1): exit 0 and a time per batch
    grep -q '^GUEST-IGT test=gem_exec_nop rc=0 us_per_batch=[0-9]' "$L" ||
        fail "stage d workload: i-g-t gem_exec_nop: $(grep '^GUEST-IGT' "$L" | tail -n1) $(grep '^GUEST-IGT-OUT' "$L" | tail -n 3 | tr '\n' ' ')"
    say "i-g-t: $(grep '^GUEST-IGT test=' "$L" | tail -n1)"
}
stage 1 "stage "
igt
grep -q '^GUEST-I915-RMMOD pass=1 ok' "$L" || fail "stage e display: rmmod i915 after pass 1 failed"
stage 2 "stage e display (pass 2 stage "
grep -q '^GUEST-MODESET result=ok' "$L" || fail "stage e display: dumb-buffer modeset: $(grep '^GUEST-MODESET' "$L" | tail -n1)"
[ "$shot" = ok ] || fail "stage e display: no screenshot: $(tail -n1 /tmp/shot.out 2>/dev/null)"
if grep -q 'I915FINAL=probe' /guest/i915.cfg && xenstore-exists "/local/domain/$D" 2>/dev/null; then
    echo "$D" >$ST/i915-domid; keep=1; echo 1 >$ST/i915-keep
    say "guest $D left running for i915-churn (serial line $nS)"
else
    xl destroy "$D" 2>/dev/null; wait_gone "$D" 60
fi
exit 0
