# pvinfo: inside the guest, BAR0+0x78000 reads give the PVINFO magic, version 1.x and the
# ballooning windows / fence count that `xengt-ctl info --json` reports; a write to the
# guest-writable display_ready reads back through the mediator, a write to magic does not.
. /scenarios/common.sh
D=$(domid_of_test_guest); [ -n "$D" ] || fail "no vGPU guest (hotplug failed)"
wait_console $VGPU_NAME '^GUEST-RW ' 300 || { show_console $VGPU_NAME; fail "no GUEST-PVINFO/GUEST-RW from the guest"; }
grep '^GUEST-PVINFO \|^GUEST-RW \|^GUEST-PARAMS ' "$(console_log $VGPU_NAME)"
g() { guest_field $VGPU_NAME GUEST-PVINFO "$1"; }
[ "$(g magic | tr A-F a-f)" = 0x4776544776544776 ] || fail "PVINFO magic is '$(g magic)'"
[ "$(dec "$(g ver_major)")" = 1 ] || fail "PVINFO version_major is '$(g ver_major)', want 1"
I=$ST/info0.json
for k in low_base low_size high_base high_size; do
    case $k in low_base) j=$J_LOW_BASE ;; low_size) j=$J_LOW_SIZE ;; high_base) j=$J_HIGH_BASE ;; high_size) j=$J_HIGH_SIZE ;; esac
    want=$(jnum "$j" $I); got=$(dec "$(g $k)")
    [ -n "$want" ] && [ "$got" = "$want" ] || fail "PVINFO $k=$(g $k) but xengt-ctl info $j=$want"
done
want=$(jnum "$J_FENCES" $I)
[ -n "$want" ] && [ "$(dec "$(g fences)")" = "$want" ] || fail "PVINFO fence_num=$(g fences), info .fences=$want"
[ "$(dec "$(guest_field $VGPU_NAME GUEST-RW display_ready_after)")" = 1 ] ||
    fail "display_ready write not read back: $(grep '^GUEST-RW' "$(console_log $VGPU_NAME)")"
[ "$(guest_field $VGPU_NAME GUEST-RW magic_after_write | tr A-F a-f)" = 0x4776544776544776 ] ||
    fail "a guest write changed the PVINFO magic"
