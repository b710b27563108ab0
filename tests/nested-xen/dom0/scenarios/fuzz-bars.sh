# fuzz-bars: the guest pokes random offsets/widths/values of BAR0 (xgfuzz accesses); xengtd
# keeps running, the guest is not crashed and the vGPU still answers.
. /scenarios/common.sh
D=$(domid_of_test_guest); [ -n "$D" ] || fail "no vGPU guest (hotplug failed)"
wait_console $VGPU_NAME '^GUEST-FUZZ-DONE ' 300 || { show_console $VGPU_NAME; fail "guest never finished fuzzing"; }
grep '^GUEST-FUZZ-DONE ' "$(console_log $VGPU_NAME)"
daemon_alive || fail "xengtd died during the fuzzing: $(tail -n1 /var/log/xengtd.log)"
xenstore-exists "/local/domain/$D" || fail "guest $D is gone after fuzzing"
n=$(guest_field $VGPU_NAME GUEST-FUZZ-DONE accesses)
[ "${n:-0}" -gt 0 ] || fail "no accesses made"
[ "$(guest_field $VGPU_NAME GUEST-FUZZ-DONE magic_after)" != ERR ] || fail "BAR0 unreadable after fuzzing"
info_json "$D" $ST/info2.json || fail "xengt-ctl info $D --json failed after fuzzing"
say "fuzzed $n accesses; info: $(tr -d ' \n' <$ST/info2.json)"
