# hvm-smoke: an HVM guest with qemu-xen as its device model and the vGPU at a PCI slot QEMU
# leaves free (00:02.0 with vga="none", xen_platform_pci=0): the guest enumerates vendor
# 0x8086 with a Gen9 device id, hvmloader programs BAR0 and xengtd follows it (the BAR0
# address in `xengt-ctl info --json` equals the guest's, and PVINFO answers there).
# The guest is started by stock `xl create`; its config names the packaged device-model
# hook (`device_model_override`), which hands the vGPU over before qemu-xen starts.
. /scenarios/common.sh
start_daemon
N=vgpuhvm
[ -x /usr/libexec/xengt/qemu-dm-vgt ] || fail "the xengt package did not install /usr/libexec/xengt/qemu-dm-vgt"
# A config the hook refuses: xl create fails, nothing is left behind, the reason is logged.
sed -e 's/^name = .*/name = "vgpubad"/' -e 's/^vgt_low_gm_sz = .*/vgt_low_gm_sz = 3/' \
    -e 's|"/guest/hvm.cfg"|"/tmp/hvm-bad.cfg"|' /guest/hvm.cfg >/tmp/hvm-bad.cfg
if xl create /tmp/hvm-bad.cfg >/tmp/create-bad.out 2>&1; then
    fail "stock xl create of a config with vgt_low_gm_sz = 3 succeeded"
fi
xl domid vgpubad >/dev/null 2>&1 && fail "a refused dm hook left domain vgpubad behind"
grep -q vgt_low_gm_sz /var/log/xen/qemu-dm-vgpubad.log 2>/dev/null ||
    fail "the dm hook's refusal does not name vgt_low_gm_sz: $(tail -n1 /var/log/xen/qemu-dm-vgpubad.log 2>/dev/null)"
say "dm hook refused vgt_low_gm_sz = 3: $(tail -n1 /var/log/xen/qemu-dm-vgpubad.log)"
xl create /guest/hvm.cfg >/tmp/create-hvm.out 2>&1 || { cat /tmp/create-hvm.out; dm_logs; fail "stock xl create hvm.cfg (dm hook) failed: $(tail -n1 /tmp/create-hvm.out)"; }
D=$(xl domid $N 2>/dev/null) || fail "no domain $N after xl create"
grep -q "vGPU of domain $D connected" /var/log/xen/qemu-dm-$N.log 2>/dev/null ||
    { dm_logs; fail "the dm hook did not report the vGPU of $D connected in qemu-dm-$N.log"; }
say "HVM domain $D created by stock xl create (vGPU through the dm hook)"
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
