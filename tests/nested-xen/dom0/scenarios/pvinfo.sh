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
info_vars $ST/info0.json || fail "cannot parse the info saved by hotplug"
check() { # check NAME GUEST_VALUE WANT
    [ -n "$3" ] && [ "$(dec "$2")" = "$3" ] || fail "PVINFO $1=$2 but xengt-ctl info says '$3'"
}
check low_base "$(g low_base)" "$I_LB"; check low_size "$(g low_size)" "$I_LS"
check high_base "$(g high_base)" "$I_HB"; check high_size "$(g high_size)" "$I_HS"
check fence_num "$(g fences)" "$I_FENCES"
[ "$(dec "$(guest_field $VGPU_NAME GUEST-RW display_ready_after)")" = 1 ] ||
    fail "display_ready write not read back: $(grep '^GUEST-RW' "$(console_log $VGPU_NAME)")"
[ "$(guest_field $VGPU_NAME GUEST-RW magic_after_write | tr A-F a-f)" = 0x4776544776544776 ] ||
    fail "a guest write changed the PVINFO magic"
