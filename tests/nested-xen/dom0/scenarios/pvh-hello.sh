# pvh-hello: a PVH guest boots the Debian kernel, prints a line (also proving the guest can
# read XenStore, which the vGPU scenarios rely on) and powers off; the domain disappears.
. /scenarios/common.sh
T0=$(up)
xl create /guest/hello.cfg || fail "xl create hello.cfg failed"
D=$(xl domid hello) || fail "no domid for hello"
say "created domain $D (xl create from uptime $T0 to $(up))"
wait_console hello '^GUEST-HELLO' 300 || { show_console hello; fail "no GUEST-HELLO on the guest console"; }
wait_gone "$D" 120 || { show_console hello; xl destroy "$D"; fail "guest did not power off"; }
show_console hello 20
name=$(guest_field hello GUEST-XS name)
[ "$name" = hello ] || fail "guest could not read its XenStore name (got '$name')"
say "guest came and went (created at $T0, now $(up))"
