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
# benchmarks and tools, not its tests such as gem_exec_basic).
NX_PACKAGES="xen-hypervisor-4.17-amd64 xen-utils-4.17 xenstore-utils linux-image-amd64
 busybox-static cpio jq qemu-system-x86 qemu-system-xen seabios ipxe-qemu intel-gpu-tools"

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
