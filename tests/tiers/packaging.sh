#!/usr/bin/env bash
# Tier: the operator's install path on this Debian 12 host. Builds the .deb (`make deb`),
# installs it for real with apt (which pulls the Xen libraries it depends on), checks the
# layout, the unit (`systemd-analyze verify`, `systemd-analyze security` at least "OK"),
# the man pages and the conffile, runs the installed daemon the way the unit does (with
# the simulated backend: no Xen on the host) until it reports READY=1 over sd_notify,
# then purges the package. The nested-Xen tiers run the same .deb inside the dom0.
# Fails with "FAIL packaging: <reason>"; never skips.
set -euo pipefail
cd "$(dirname "$0")/../.."
fail() { echo "FAIL packaging: $*"; exit 1; }
say() { echo "packaging: $*"; }
command -v dpkg-deb >/dev/null && command -v apt-get >/dev/null || fail "needs a Debian host (dpkg-deb, apt-get)"
command -v systemd-analyze >/dev/null || fail "needs systemd-analyze (Debian package systemd)"
[ "$(id -u)" = 0 ] || fail "must run as root to install the package"
if ! command -v man >/dev/null; then
    say "installing man-db"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q man-db >/dev/null || fail "cannot install man-db"
fi
command -v python3 >/dev/null || fail "needs python3 (for the sd_notify listener)"

say "make deb"
make -s deb >target/packaging-make.log 2>&1 || { tail -n 20 target/packaging-make.log; fail "make deb failed"; }
deb=$(ls target/debian/xengt_*.deb 2>/dev/null | head -n1)
[ -s "$deb" ] || fail "make deb produced no target/debian/xengt_*.deb"
say "built $deb ($(du -k "$deb" | cut -f1) KiB)"

# Layout: what an operator expects to find.
list=$(dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\./|/|')
for p in /usr/sbin/xengtd /usr/sbin/xengt-ctl /lib/systemd/system/xengtd.service /etc/xengt/xengtd.json \
         /usr/share/doc/xengt/README.md /usr/share/doc/xengt/config-reference.md \
         /usr/share/man/man8/xengtd.8.gz /usr/share/man/man1/xengt-ctl.1.gz \
         /usr/share/man/man1/xengt-ctl-list.1.gz /usr/share/bash-completion/completions/xengt-ctl /usr/libexec/xengt/qemu-dm-vgt; do
    grep -qx "$p" <<<"$list" || fail "the package lacks $p"
done
[ "$(dpkg-deb -f "$deb" Package)" = xengt ] || fail "package name is not xengt"
grep -qx /etc/xengt/xengtd.json <<<"$(dpkg-deb -I "$deb" conffiles)" || fail "/etc/xengt/xengtd.json is not a conffile"

# Install for real (apt resolves Depends: the libxen* libraries from Debian).
dpkg -s xengt >/dev/null 2>&1 && { say "removing a previous xengt"; apt-get purge -y -q xengt >/dev/null; }
cleanup() { apt-get purge -y -q xengt >/dev/null 2>&1 || true; }
trap cleanup EXIT
say "apt-get install $deb"
# Depends only: the tier proves what the package needs (Recommends pull all of Xen and QEMU).
# A stale package index (404 on fetch) gets one `apt-get update` and a second try.
apt_install() { DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "./$deb"; }
apt_install >target/packaging-apt.log 2>&1 ||
    { say "apt-get install failed; apt-get update and retry"; apt-get update -q >>target/packaging-apt.log 2>&1; apt_install >>target/packaging-apt.log 2>&1; } ||
    { tail -n 20 target/packaging-apt.log; fail "apt-get install of the .deb failed"; }
[ -x /usr/sbin/xengtd ] && [ -x /usr/sbin/xengt-ctl ] || fail "binaries not installed in /usr/sbin"
/usr/sbin/xengtd --version | grep -q "^xengtd " || fail "installed xengtd --version"
# (Captured first: `ldconfig -p | grep -q` under pipefail fails when grep stops reading early.)
cache=$(ldconfig -p)
for lib in libxendevicemodel.so.1 libxenforeignmemory.so.1 libxenevtchn.so.1 libxenctrl.so.4.17; do
    grep -qF "$lib " <<<"$cache" || fail "Depends did not bring $lib"
done

say "systemd-analyze verify xengtd.service"
out=$(systemd-analyze verify xengtd.service 2>&1) || fail "systemd-analyze verify: $(echo "$out" | head -n 3 | tr '\n' ' ')"
[ -z "$out" ] || fail "systemd-analyze verify is not clean: $(echo "$out" | head -n 3 | tr '\n' ' ')"
sec=$(systemd-analyze security --offline=true /lib/systemd/system/xengtd.service 2>&1 | grep 'Overall exposure level') ||
    fail "systemd-analyze security printed no overall level"
say "${sec#→ }"
level=$(sed -n 's/.*xengtd.service: \([0-9.]*\) \([A-Z]*\).*/\1 \2/p' <<<"$sec")
read -r score rating <<<"$level"
case "$rating" in PERFECT|SAFE|OK) ;; *) fail "hardening rated '$rating' ($score); needs OK or better" ;; esac

for page in xengtd xengt-ctl xengt-ctl-list xengt-ctl-create; do
    man -w "$page" >/dev/null 2>&1 || fail "man $page: not found"
    text=$(man "$page" 2>/dev/null) || fail "man $page failed to render"
    [ -n "$text" ] || fail "man $page renders empty"
done

# The daemon as the unit starts it (ExecStart, with the simulated backend since this host
# has no Xen), proving Type=notify readiness from the installed files.
exec_line=$(sed -n 's/^ExecStart=//p' /lib/systemd/system/xengtd.service)
[ -n "$exec_line" ] || fail "no ExecStart= in the installed unit"
run=$(mktemp -d)
sock="$run/xengtd.sock"
grep -q -- '--control-socket /run/xengt/xengtd.sock' <<<"$exec_line" || fail "ExecStart does not name /run/xengt/xengtd.sock"
exec_line=${exec_line/--backend xen/--backend sim}
exec_line=${exec_line/\/run\/xengt\/xengtd.sock/$sock}
# shellcheck disable=SC2086
set -- $exec_line --xenstore none --log-target stderr
python3 - "$run/notify" "$@" <<'EOF' || fail "installed xengtd did not report READY=1"
import os, socket, subprocess, sys
path, cmd = sys.argv[1], sys.argv[2:]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.bind(path); s.settimeout(30)
p = subprocess.Popen(cmd, env=dict(os.environ, NOTIFY_SOCKET=path), stderr=subprocess.PIPE)
try:
    while True:
        msg = s.recv(4096).decode()
        if "READY=1" in msg.splitlines():
            print("packaging: installed xengtd: " + msg.replace("\n", " "))
            break
    out = subprocess.run(["/usr/sbin/xengt-ctl", "--socket", cmd[cmd.index("--control-socket") + 1], "types"],
                         capture_output=True, text=True, timeout=30)
    if out.returncode != 0 or "GVTg_V5_4" not in out.stdout:
        sys.exit("xengt-ctl types against the installed daemon: " + out.stderr.strip())
    p.terminate()
    if p.wait(timeout=30) != 0:
        sys.exit("xengtd exited %d on SIGTERM: %s" % (p.returncode, p.stderr.read().decode()[-300:]))
except socket.timeout:
    p.kill(); sys.exit("no READY=1 in 30 s: " + p.stderr.read().decode()[-300:])
EOF
rm -rf "$run"

# Conffile kept on remove, gone on purge.
apt-get remove -y -q xengt >/dev/null || fail "apt-get remove failed"
[ -e /etc/xengt/xengtd.json ] || fail "remove deleted the conffile"
[ ! -e /usr/sbin/xengtd ] || fail "remove left /usr/sbin/xengtd"
apt-get purge -y -q xengt >/dev/null || fail "apt-get purge failed"
[ ! -e /etc/xengt ] || fail "purge left /etc/xengt"
trap - EXIT
say "ok"
