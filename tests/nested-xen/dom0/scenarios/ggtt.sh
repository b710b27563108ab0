# ggtt: a GGTT PTE written inside the vGPU's window is applied (reads back); one outside
# both windows is dropped (reads 0) and counted in counters.ggtt_writes_dropped.
. /scenarios/common.sh
D=$(domid_of_test_guest); [ -n "$D" ] || fail "no vGPU guest (hotplug failed)"
wait_console $VGPU_NAME '^GUEST-GGTT ' 300 || { show_console $VGPU_NAME; fail "no GUEST-GGTT from the guest"; }
grep '^GUEST-GGTT ' "$(console_log $VGPU_NAME)"
g() { guest_field $VGPU_NAME GUEST-GGTT "$1"; }
[ "$(dec "$(g in_read)")" = "$(dec "$(g written)")" ] || fail "in-window PTE not applied: wrote $(g written), read $(g in_read)"
[ "$(dec "$(g out_read)")" = 0 ] || fail "out-of-window PTE not dropped: read $(g out_read)"
info_json "$D" $ST/info1.json || fail "xengt-ctl info $D --json failed: $(tail -n1 $ST/info1.json.err)"
info_vars $ST/info0.json; before=$I_DROPPED; info_vars $ST/info1.json; after=$I_DROPPED
[ -n "$after" ] || fail "info has no counters.ggtt_writes_dropped"
[ "$after" -gt "${before:-0}" ] || fail "counters.ggtt_writes_dropped did not grow ($before -> $after)"
say "ggtt_writes_dropped $before -> $after"
