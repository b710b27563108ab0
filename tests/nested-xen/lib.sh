# Shared settings for the nested-Xen harness; sourced by the other scripts.
# Everything downloaded lives in $NX_CACHE (outside the repo, reused across runs and clones);
# everything built per run lives in $NX_OUT (target/nested-xen/ of the worktree).
NX_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NX_REPO="$(cd "$NX_DIR/../.." && pwd)"
NX_CACHE="${XENGT_NESTED_CACHE:-/var/cache/xengt-nested}"
NX_ROOT="$NX_CACHE/root"          # all fetched .debs unpacked here (dpkg -x)
NX_OUT="${XENGT_NESTED_OUT:-$NX_REPO/target/nested-xen}"
NX_XENBIN=/usr/lib/xen-4.17/bin

# Debian packages the harness needs; their dependency closure (minus what the host has
# installed) is downloaded. qemu-system-xen is the HVM device model (hvm-smoke);
# intel-gpu-tools gives the i915 guest i-g-t's gem_exec_nop (Debian ships i-g-t's
# benchmarks and tools, not its tests such as gem_exec_basic). The hypervisor's -dbg
# package gives dom0 Xen's symbol map, to name a Xen address in a crash dump.
NX_PACKAGES="xen-hypervisor-4.17-amd64 xen-hypervisor-4.17-amd64-dbg xen-utils-4.17 xenstore-utils
 linux-image-amd64 busybox-static cpio jq qemu-system-x86 qemu-system-xen seabios ipxe-qemu intel-gpu-tools"

# The outer QEMU, the emulator Xen itself runs on under TCG, comes from this Debian suite:
# "bookworm" takes qemu-system-x86 of the package closure above; any other suite (e.g.
# bookworm-backports) is fetched by fetch.sh into its own prefix $NX_QROOT, resolved
# against the host's own bookworm mirror (tests/nested-xen/README.md, "Triple faults").
NX_QEMU_SUITE="${XENGT_NESTED_QEMU_SUITE:-bookworm}"
NX_QROOT="$NX_CACHE/outer-qemu-$NX_QEMU_SUITE"

nx_log() { printf '[nested-xen %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
nx_die() { printf 'FAIL nested-xen-setup: %s\n' "$*" >&2; exit 1; }

# Library path for running binaries from the unpacked prefix on the host.
nx_ldpath() {
    echo "$NX_ROOT/usr/lib/x86_64-linux-gnu:$NX_ROOT/lib/x86_64-linux-gnu:$NX_ROOT/usr/lib/xen-4.17/lib"
}

# The kernel version shipped by the fetched linux-image package.
nx_kver() {
    local k
    k=$(ls "$NX_ROOT"/boot/vmlinuz-* 2>/dev/null | sort -V | tail -n1) || true
    [ -n "$k" ] || nx_die "no kernel in $NX_ROOT/boot (run fetch.sh)"
    basename "$k" | sed 's/^vmlinuz-//'
}
# The outer QEMU: binary, library path and firmware directory (empty: the main root's).
nx_qemu() {
    if [ "$NX_QEMU_SUITE" != bookworm ]; then echo "$NX_QROOT/usr/bin/qemu-system-x86_64"; else echo "$NX_ROOT/usr/bin/qemu-system-x86_64"; fi
}
nx_qemu_ldpath() {
    [ "$NX_QEMU_SUITE" = bookworm ] || echo "$NX_QROOT/usr/lib/x86_64-linux-gnu:$NX_QROOT/lib/x86_64-linux-gnu:"
}
nx_qemu_fw() { [ "$NX_QEMU_SUITE" = bookworm ] || echo "$NX_QROOT/usr/share/qemu"; }
nx_qemu_version() { LD_LIBRARY_PATH="$(nx_qemu_ldpath)$(nx_ldpath)" "$(nx_qemu)" --version 2>/dev/null | head -n1; }
