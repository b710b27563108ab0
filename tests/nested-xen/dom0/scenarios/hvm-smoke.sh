# hvm-smoke: an HVM guest with qemu-xen as its device model and the vGPU at a PCI slot QEMU
# leaves free (00:02.0 with vga="none", xen_platform_pci=0): the guest enumerates vendor
# 0x8086 with a Gen9 device id, hvmloader programs BAR0 and xengtd follows it (the BAR0
# address in `xengt-ctl info --json` equals the guest's, and PVINFO answers there).
. /scenarios/common.sh
start_daemon
N=vgpuhvm
xengt-ctl create /guest/hvm.cfg >/tmp/create-hvm.out 2>&1 || { cat /tmp/create-hvm.out; dm_logs; fail "xengt-ctl create hvm.cfg failed: $(tail -n1 /tmp/create-hvm.out)"; }
D=$(xl domid $N 2>/dev/null) || fail "no domain $N after xengt-ctl create"
say "HVM domain $D created"
wait_console $N '^GUEST-HVM-DONE' 500 || { show_console $N 60; xl destroy "$D"; fail "no GUEST-HVM-DONE from the HVM guest"; }
grep '^GUEST-' "$(console_log $N)"
g() { guest_field $N GUEST-VGPU "$1"; }
[ "$(g vendor)" = 0x8086 ] || { xl destroy "$D"; fail "no Intel VGA device in the guest: $(grep '^GUEST-PCI' "$(console_log $N)" | tr '\n' ';')"; }
case $(g device) in 0x19[012][0-9a-f]|0x59[012][0-9a-f]) ;; *) xl destroy "$D"; fail "device id $(g device) is not Gen9" ;; esac
[ "$(g magic | tr A-F a-f)" = 0x4776544776544776 ] || { xl destroy "$D"; fail "PVINFO magic at the firmware-programmed BAR0 $(g bar0) is '$(g magic)'"; }
info_json "$D" /tmp/info-hvm.json || { xl destroy "$D"; fail "xengt-ctl info $D --json failed"; }
info_vars /tmp/info-hvm.json
[ "$(dec "$(g bar0)")" = "$I_BAR0" ] ||
    { xl destroy "$D"; fail "PVINFO answers at the guest's BAR0 $(g bar0), but xengt-ctl info reports bar0 $(printf '0x%x' "$I_BAR0")"; }
xl destroy "$D"
wait_gone "$D" 60 || fail "HVM guest did not go away"
