# i915-churn (issue 8, bad input): takes over the guest the i915 scenario left running.
# After its display pass the guest unloads i915 and loads/unloads it five times in a row
# (I915CYCLES=5, one GUEST-CYCLE line each; the last also runs i915-store), then starts one
# more probe (I915FINAL=probe) that dom0 cuts short with `xl destroy` once xengtd's trace
# of the domain shows the probe under way. Stages, each needing the previous:
#   f cycles    every cycle: detected, balloon, initialized, card0, not wedged, rmmod ok,
#               card0 gone after rmmod, no kernel warning; the last cycle's workload ok
#   g destroy   the destroy landed mid-probe (>= CHURN_MIN_ACCESSES accesses after
#               "insmod start", and "insmod rc=" never printed)
#   h cleanup   xengtd still runs (same pid); no node of the domain left in XenStore
#               (backend node and directory, /xengt/vgpu record, /local/domain/D), no
#               zombie domain, xengt-ctl neither lists nor answers for it;
#               available_instances and xengtd's open fds are back to their values from
#               before the i915 guest existed
#   i bystander the HVM bystander's vGPU answered correctly throughout and after
#               (GUEST-WATCH rounds advance, errors=0), its backend is still Connected;
#               then it is destroyed too and the daemon is back to its starting capacity
. /scenarios/common.sh
[ -s $ST/i915-keep ] || fail "setup: the i915 scenario left no guest running (it failed, or i915.cfg has no I915FINAL=probe)"
D=$(cat $ST/i915-domid); N=hvmi915; L=/var/log/xen/$N-serial.log
PID=$(cat $ST/xengtd.pid); TRACE=/var/log/xengtd-mmio-$D.trace
read -r nS nT <$ST/stream.pos
BE=$(backend_dir "$D") || fail "setup: no backend node for the i915 guest $D"
trap 'xl destroy "$D" 2>/dev/null' EXIT
W=$(cat $ST/bystander-domid 2>/dev/null)
[ -s $ST/bystander-error ] && fail "setup: bystander: $(cat $ST/bystander-error)"
[ -n "$W" ] || fail "setup: no bystander guest"
WL=$(console_log bystander)
wround() { grep '^GUEST-WATCH ' "$WL" | tail -n1 | sed -n 's/.*round=\([0-9]*\).*/\1/p'; }
# The bystander booted beside the i915 guest: it must be answering before the abuse.
wait_console bystander '^GUEST-WATCH round=2 ' 300 || { show_console bystander 20; fail "setup: the bystander never answered twice: $(grep '^GUEST-' "$WL" | tail -n1)"; }
r_start=$(wround)

# ---- f: the cycles, until the final probe starts
i=0; lastS=$nS; still=0
until grep -q '^GUEST-FINAL insmod start' "$L" 2>/dev/null; do
    sleep 2; i=$((i + 2)); stream_guest "$L"
    xenstore-exists "/local/domain/$D" 2>/dev/null || fail "stage f cycles: the guest went away before its final probe; Xen: $(xen_death "$D"); last: $(grep '^GUEST-' "$L" | tail -n1)"
    daemon_alive || fail "stage f cycles: xengtd exited: $(tail -n1 /var/log/xengtd.log)"
    if [ "$nS" -gt "$lastS" ]; then lastS=$nS; still=0; else still=$((still + 2)); fi
    [ "$still" -lt "${I915_STALL:-150}" ] || fail "stage f cycles: guest serial silent for ${still}s; last: $(grep '^GUEST-' "$L" | tail -n1)"
    [ $i -lt "${CHURN_WAIT:-900}" ] || fail "stage f cycles: no final probe after ${i}s; last: $(grep '^GUEST-' "$L" | tail -n1)"
done
# ---- g: destroy in the middle of the final probe
# The trigger is xengtd's own count of the domain's accesses (info --json), which only a
# live guest makes grow; a guest that dies is named with what Xen logged of its end.
# Read with grep, not jq (a jq run costs seconds under nested TCG), and with only 0.3 s
# between reads: the probe completes about 2000 accesses after its start, and a loop of
# a few seconds overshot it once.
accesses() {
    xengt-ctl info "$D" --json >/tmp/info-g.json 2>/tmp/info-g.err &&
        grep -o '"accesses": *[0-9]*' /tmp/info-g.json | head -n1 | sed 's/.*: *//'
}
a0=$(accesses) || fail "stage g destroy: xengt-ctl info $D --json failed: $(tail -n1 /tmp/info-g.err)"
[ -n "$a0" ] || fail "stage g destroy: info --json of $D has no .counters.mediator.accesses"
g_end=$(( $(up | cut -d. -f1) + 180 ))
while :; do
    xenstore-exists "/local/domain/$D" 2>/dev/null ||
        fail "stage g destroy: the i915 guest died during its final probe; Xen: $(xen_death "$D"); last: $(grep '^GUEST-' "$L" | tail -n1)"
    a=$(accesses); [ -n "$a" ] || a=$a0
    grep -q '^GUEST-FINAL insmod rc=' "$L" && fail "stage g destroy: the final probe completed before dom0 destroyed the guest (+$((a - a0)) accesses)"
    [ $((a - a0)) -ge "${CHURN_MIN_ACCESSES:-400}" ] && break
    [ "$(up | cut -d. -f1)" -lt "$g_end" ] || fail "stage g destroy: the final probe made only $((a - a0)) accesses in 180s"
    sleep 0.3
done
r_destroy=$(wround)
xl destroy "$D" || fail "stage g destroy: xl destroy $D failed"
# From the last info before the destroy (read now: jq costs seconds): what the vGPU wrote
# for the guest into frames it no longer protected (committed; mediator::gvt::io), and
# the effects Xen refused. 0 and 0: Xen's write protection never outlived the model's.
unprot=$(jq -r '.counters.mediator.unprotected_ram_writes // empty' /tmp/info-g.json)
efx=$(jq -r '.counters.server.dispatch.effect_errors // empty' /tmp/info-g.json)
say "destroyed domain $D mid-probe: +$((a - a0)) accesses since insmod start (xengtd's count), last traced: $(tail -n1 "$TRACE"); unprotected_ram_writes=$unprot effect_errors=$efx"
wait_gone "$D" 60 || fail "stage g destroy: /local/domain/$D still present 60s after xl destroy"
stream_guest "$L"
grep -q '^GUEST-FINAL insmod rc=' "$L" && fail "stage g destroy: the final probe completed ($(grep '^GUEST-FINAL insmod rc=' "$L")): not destroyed mid-probe"
# Stage f's verdict (checked now: the guest is gone, so nothing is left running on a failure).
cy=$(grep -c '^GUEST-CYCLE ' "$L")
[ "$cy" = 5 ] || fail "stage f cycles: $cy GUEST-CYCLE lines, want 5"
grep '^GUEST-CYCLE ' "$L" | while read -r line; do
    for kv in insmod_rc=0 detected=1 balloon=1 initialized=1 card0=1 wedged=0 rmmod_rc=0 card0_after=0 warnings=0; do
        echo " $line " | grep -q " $kv " || { echo "$line (want $kv)"; break; }
    done
done >/tmp/cycle-bad
[ -s /tmp/cycle-bad ] && fail "stage f cycles: $(head -n1 /tmp/cycle-bad)"
grep '^GUEST-CYCLE k=5 ' "$L" | grep -q ' store=ok ' || fail "stage f cycles: workload after the last load: $(grep '^GUEST-STORE' "$L" | tail -n1)"
grep -q '^GUEST-CYCLES done=5 ok=5 ' "$L" || fail "stage f cycles: $(grep '^GUEST-CYCLES' "$L")"
say "stage f: 5 load/unload cycles clean; $(grep '^GUEST-CYCLES' "$L")"
# A dead bystander would make the capacity checks below misleading: say so first.
xenstore-exists "/local/domain/$W" 2>/dev/null ||
    fail "stage i bystander: domain $W died during the churn; Xen: $(xen_death "$W"); its last line: $(grep '^GUEST-' "$WL" | tail -n1)"
[ "$unprot" = 0 ] || fail "stage g destroy: the vGPU committed $unprot trapped guest writes to frames it no longer protected (unprotected_ram_writes; want 0): Xen kept a write protection the model had lifted"
[ "$efx" = 0 ] || fail "stage g destroy: $efx effects of the i915 guest's vGPU were refused by Xen (effect_errors; want 0): $(grep 'effect refused' /var/log/xengtd.log | tail -n1)"
# ---- h: nothing left behind, nothing else hurt
wait_no_leftovers "$D" "$BE" 30 || fail "stage h cleanup: 30s after destroy still:$LEFT"
daemon_alive && [ "$(cat $ST/xengtd.pid)" = "$PID" ] || fail "stage h cleanup: xengtd (pid $PID) is gone: $(tail -n1 /var/log/xengtd.log)"
a=$(avail_now) || fail "stage h cleanup: xengt-ctl types --json failed: $(tail -n1 /tmp/types.err)"
[ "$a" = "$(cat $ST/avail-before-i915)" ] || fail "stage h cleanup: available_instances $(cat $ST/avail-before-i915) before the i915 guest, $a after its destroy"
f=$(xengtd_fds)
[ "$f" -le "$(cat $ST/fds-before-i915)" ] || { ls -l "/proc/$PID/fd" | tail -n 20; fail "stage h cleanup: xengtd holds $f fds, $(cat $ST/fds-before-i915) before the i915 guest: leaked"; }
say "stage h: no leftovers of domain $D; available_instances=$a; xengtd fds=$f; rss=$(grep VmRSS /proc/$PID/status | tr -s ' ')"
# ---- i: the bystander
k=0
until [ "$(wround)" -ge $((r_destroy + 3)) ]; do
    k=$((k + 1)); [ $k -lt 90 ] || { show_console bystander 10; fail "stage i bystander: no GUEST-WATCH round after the destroy (last round $(wround), $r_destroy at destroy)"; }
    sleep 1
done
bad=$(grep '^GUEST-WATCH .*bad=' "$WL" | head -n1)
[ -z "$bad" ] || fail "stage i bystander: its vGPU misbehaved: $bad"
[ "$(wround)" -gt "$r_start" ] && [ "$r_destroy" -gt "$r_start" ] || fail "stage i bystander: no progress while the i915 guest churned (rounds $r_start, $r_destroy, $(wround))"
[ "$(xenstore-read "$(cat $ST/bystander-backend)/state" 2>/dev/null)" = 4 ] || fail "stage i bystander: backend state is no longer 4 (Connected)"
info_json "$W" /tmp/info-by.json || fail "stage i bystander: xengt-ctl info $W failed"
say "stage i: bystander rounds $r_start at takeover, $r_destroy at destroy, $(wround) now, no errors"
xl destroy "$W" || fail "stage i bystander: xl destroy $W failed"
wait_gone "$W" 60 || fail "stage i bystander: still present 60s after xl destroy"
wait_no_leftovers "$W" "$(cat $ST/bystander-backend)" 30 || fail "stage i bystander: 30s after its destroy still:$LEFT"
a=$(avail_now); [ "$a" = "$(cat $ST/avail-start)" ] || fail "stage i bystander: available_instances $(cat $ST/avail-start) at daemon start, $a with no guests"
daemon_alive || fail "xengtd exited: $(tail -n1 /var/log/xengtd.log)"
say "all vGPUs gone; available_instances=$a; xengtd log: $(grep -c ERROR /var/log/xengtd.log) ERROR, $(grep -c WARN /var/log/xengtd.log) WARN lines"
exit 0
