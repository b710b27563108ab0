# hvm-hello: a plain HVM guest (qemu-xen, hvmloader, SeaBIOS) boots, prints its line on
# ttyS0 (a file in dom0) and powers off. Infrastructure check for hvm-smoke.
. /scenarios/common.sh
xl create /guest/hvmhello.cfg || { dm_logs; fail "xl create hvmhello.cfg failed"; }
D=$(xl domid hvmhello) || fail "no domid for hvmhello"
say "created HVM domain $D"
wait_console hvmhello '^GUEST-HELLO' 500 || { show_console hvmhello; xl destroy "$D"; fail "no GUEST-HELLO on the HVM guest's serial"; }
wait_gone "$D" 120 || { show_console hvmhello; xl destroy "$D"; fail "HVM guest did not power off"; }
show_console hvmhello 5
