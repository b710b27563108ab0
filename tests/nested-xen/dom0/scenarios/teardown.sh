# teardown: `xl destroy` of the guest removes its vGPU (xengt-ctl list/info), its XenStore
# backend node and daemon record (/xengt/vgpu/<domid>), and its ioreq server and mappings
# (the domain must not linger as a "(null)" zombie held by xengtd's foreign mappings);
# available_instances recovers; xengtd keeps running.
. /scenarios/common.sh
D=$(domid_of_test_guest); [ -n "$D" ] || fail "no vGPU guest (hotplug failed)"
BE=$(cat $ST/backend 2>/dev/null)
xl destroy "$D" || fail "xl destroy $D failed"
wait_gone "$D" 60 || fail "/local/domain/$D still present 60s after xl destroy"
wait_no_leftovers "$D" "$BE" 30 || fail "30s after destroy still:$LEFT"
daemon_alive || fail "xengtd exited on guest destroy: $(tail -n1 /var/log/xengtd.log)"
a0=$(cat $ST/avail0 2>/dev/null); a1=$(avail_now) || fail "xengt-ctl types --json failed: $(tail -n1 /tmp/types.err)"
[ -n "$a1" ] || fail "xengt-ctl types --json has no available_instances"
[ "$a1" = "$a0" ] || fail "available_instances $a0 before create, $a1 after destroy"
say "vGPU of domain $D gone; available_instances=$a1"
