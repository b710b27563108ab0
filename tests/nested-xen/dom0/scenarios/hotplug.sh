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

BE=$(backend_dir "$D") || { xenstore-ls -f /local/domain/0 | tail -n 30; fail "no vGPU backend node for domain $D under /local/domain/0/backend"; }
echo "$BE" >$ST/backend
state=$(xenstore-read "$BE/state" 2>/dev/null)
[ "$state" = 4 ] || fail "backend $BE/state is '$state', want 4 (Connected)"
xl list "$D" | tail -n +2 | awk '{print $5}' >/tmp/xlstate
grep -q p /tmp/xlstate && fail "guest $D is still paused after xengt-ctl create ($(cat /tmp/xlstate))"

xengt-ctl list --json >/tmp/list1.json || fail "xengt-ctl list --json failed after create"
vgpus_json /tmp/list1.json | jq -e --argjson d "$D" 'any(.[]; .domid == $d)' >/dev/null ||
    fail "xengt-ctl list --json does not show domain $D: $(cat /tmp/list1.json)"
info_json "$D" $ST/info0.json || fail "xengt-ctl info $D --json failed: $(tail -n1 $ST/info0.json.err)"
say "info: $(cat $ST/info0.json)"

bar0=$(jnum .bar0 $ST/info0.json) || fail "info has no bar0"
lb=$(jnum "$J_LOW_BASE" $ST/info0.json) && ls_=$(jnum "$J_LOW_SIZE" $ST/info0.json) &&
    hb=$(jnum "$J_HIGH_BASE" $ST/info0.json) && hs=$(jnum "$J_HIGH_SIZE" $ST/info0.json) ||
    fail "info lacks low_gm/high_gm {base,size}"
[ "$bar0" -gt 0 ] || fail "bar0 is 0"
P=/local/domain/$D/data/xengt-test
xenstore-write "$P/params" "bar0=$bar0 low_base=$lb low_size=$ls_ high_base=$hb high_size=$hs" ||
    fail "cannot publish test parameters at $P"
xenstore-chmod -r "$P" "n$D" 2>/dev/null || xenstore-chmod "$P/params" "n$D"
say "published $P/params"
