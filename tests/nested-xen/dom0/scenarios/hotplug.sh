# hotplug: xengtd --backend xen runs in dom0; `xengt-ctl create vgpu.cfg` (vgt=1 and the
# vgt_* sizes) creates the paused PVH guest, the vGPU reaches XenbusState Connected (4) in
# XenStore, the guest is unpaused and `xengt-ctl list --json` shows it. Publishes the
# guest's test parameters (BAR0 and the PVINFO windows) under its data/xengt-test.
. /scenarios/common.sh
start_daemon
say "daemon up; list: $(cat /tmp/list0.json)"
avail_now >$ST/avail0 || fail "xengt-ctl types --json failed: $(tail -n1 /tmp/types.err)"

T0=$(up)
xengt-ctl create /guest/vgpu.cfg >/tmp/create.out 2>&1 || { cat /tmp/create.out; fail "xengt-ctl create failed: $(tail -n1 /tmp/create.out)"; }
cat /tmp/create.out
D=$(xl domid $VGPU_NAME 2>/dev/null) || fail "no domain $VGPU_NAME after xengt-ctl create"
echo "$D" >$ST/domid
say "domain $D created in $T0..$(up)"

# The guest is already booting: publish its parameters first.
why=$(publish_params "$D") || fail "$why"
cp "$ST/info-$D.json" $ST/info0.json
say "info: $(tr -d ' \n' <$ST/info0.json)"
P=/local/domain/$D/data/xengt-test
say "published $P/params"

BE=$(backend_dir "$D") || { xenstore-ls -f /local/domain/0 | tail -n 30; fail "no vGPU backend node for domain $D under /local/domain/0/backend"; }
echo "$BE" >$ST/backend
state=$(xenstore-read "$BE/state" 2>/dev/null)
[ "$state" = 4 ] || fail "backend $BE/state is '$state', want 4 (Connected)"
xl list "$D" | tail -n +2 | awk '{print $5}' >/tmp/xlstate
grep -q p /tmp/xlstate && fail "guest $D is still paused after xengt-ctl create ($(cat /tmp/xlstate))"
xengt-ctl list --json >/tmp/list1.json || fail "xengt-ctl list --json failed after create"
vgpus_json /tmp/list1.json | jq -e --argjson d "$D" 'any(.[]; .domid == $d)' >/dev/null ||
    fail "xengt-ctl list --json does not show domain $D: $(cat /tmp/list1.json)"
