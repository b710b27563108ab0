#!/usr/bin/env bash
# Tier: the XenStore client against the REAL Debian 12 cxenstored (Xen 4.17), no VM.
# Installs xen-utils/xenstore-utils/libxen-dev if missing (idempotent), builds the
# fake-hypervisor LD_PRELOAD shim (tests/xenstored-shim/fakexen.c), starts xenstored on a
# private socket, runs the #[ignore]d tests of xen-backend/tests/real_xenstored.rs, stops it.
# Never skips silently: any missing prerequisite is an error with the reason.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
XENSTORED=/usr/lib/xen-4.17/bin/xenstored

fail() { echo "xenstored-real: FAIL: $*" >&2; exit 1; }

need_install=0
[ -x "$XENSTORED" ] || need_install=1
[ -f /usr/include/xenctrl.h ] || need_install=1
command -v xenstore-read >/dev/null || need_install=1
if [ "$need_install" = 1 ]; then
    [ "$(id -u)" = 0 ] || fail "xen-utils-4.17/libxen-dev missing and not root: install them (apt-get install xen-utils-4.17 xen-utils-common xenstore-utils libxen-dev)"
    echo "xenstored-real: installing xen-utils-4.17 xen-utils-common xenstore-utils libxen-dev"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends xen-utils-4.17 xen-utils-common xenstore-utils libxen-dev >/tmp/xengt-apt.log 2>&1 \
        || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends xen-utils-4.17 xen-utils-common xenstore-utils libxen-dev >/tmp/xengt-apt.log 2>&1; } \
        || { tail -20 /tmp/xengt-apt.log >&2; fail "apt-get install failed (log above)"; }
fi
[ -x "$XENSTORED" ] || fail "$XENSTORED not found after install"
[ -f /usr/include/xenctrl.h ] || fail "xenctrl.h not found (libxen-dev) after install"
command -v gcc >/dev/null || fail "gcc is needed to build the shim"

WORK=$(mktemp -d /tmp/xengt-xenstored.XXXXXX)
PID=""
cleanup() {
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
        kill "$PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

gcc -shared -fPIC -O2 -Wall -o "$WORK/fakexen.so" "$ROOT/tests/xenstored-shim/fakexen.c" -ldl \
    || fail "building the fakexen.so shim failed"

mkdir -p "$WORK/run"
XENSTORED_RUNDIR="$WORK/run" LD_PRELOAD="$WORK/fakexen.so" \
    "$XENSTORED" -N -F "$WORK/run/pid" >"$WORK/xenstored.log" 2>&1 &
PID=$!
SOCK="$WORK/run/socket"
for _ in $(seq 100); do [ -S "$SOCK" ] && break; kill -0 "$PID" 2>/dev/null || break; sleep 0.05; done
[ -S "$SOCK" ] || { cat "$WORK/xenstored.log" >&2; fail "xenstored did not create $SOCK"; }

# Sanity check with the stock C tools first, so a shim problem is not blamed on our client.
XENSTORED_PATH="$SOCK" xenstore-write /test/tier-probe ok
[ "$(XENSTORED_PATH="$SOCK" xenstore-read /test/tier-probe)" = ok ] || fail "xenstore-read through the real tools failed"

echo "xenstored-real: cxenstored pid $PID on $SOCK"
XENSTORED_PATH="$SOCK" cargo test -p xen-backend --test real_xenstored -- --include-ignored
kill -0 "$PID" 2>/dev/null || { cat "$WORK/xenstored.log" >&2; fail "xenstored died during the tests"; }
echo "xenstored-real: PASS"
