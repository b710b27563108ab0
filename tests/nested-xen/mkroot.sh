#!/usr/bin/env bash
# Build the guest initramfs and the dom0 initramfs (busybox + Xen tools + xengtd/xengt-ctl +
# ldd-collected libraries + /guest payload) into $NX_OUT. Needs fetch.sh to have run.
# Env: NX_WITH_HVM=1 also packs qemu-xen, hvmloader and SeaBIOS (for hvm-smoke);
#      NX_WITH_I915=1 (with NX_WITH_HVM=1) adds the i915 guest (i915.cpio).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

KV=$(nx_kver)
BB="$NX_ROOT/bin/busybox"
CPIO="$NX_ROOT/bin/cpio"
[ -x "$BB" ] && [ -x "$CPIO" ] || nx_die "busybox/cpio missing from $NX_ROOT (run fetch.sh)"
mkdir -p "$NX_OUT"
export LD_LIBRARY_PATH
LD_LIBRARY_PATH=$(nx_ldpath)

pack() { # pack DIR OUT.cpio
    (cd "$1" && find . | LC_ALL=C sort | "$CPIO" -o -H newc --quiet) >"$2"
}

# Copy a file from the unpacked prefix (or, failing that, the host) into root $1 at path $2.
put() {
    local r=$1 p=$2 src
    if [ -e "$NX_ROOT$p" ]; then src="$NX_ROOT$p"; elif [ -e "$p" ]; then src="$p"; else nx_die "missing $p"; fi
    mkdir -p "$r$(dirname "$p")"
    cp -L "$src" "$r$p"
}

# Copy an executable (given by its path on the host or in the prefix) and every library
# ldd resolves for it, at their path with the prefix stripped.
put_elf() {
    local r=$1 src=$2 dst=$3 lib
    mkdir -p "$r$(dirname "$dst")"
    cp -L "$src" "$r$dst"
    if ldd "$src" 2>&1 | grep 'not found' >/dev/null; then   # not -q: SIGPIPE under pipefail
        nx_die "unresolved libraries for $src: $(ldd "$src" | grep 'not found' | tr -s ' \n' ' ')"
    fi
    for lib in $(ldd "$src" 2>/dev/null | awk '/=>/ && $3 ~ /^\// {print $3}'); do
        local rel=${lib#"$NX_ROOT"}
        [ -e "$r$rel" ] || { mkdir -p "$r$(dirname "$rel")"; cp -L "$lib" "$r$rel"; }
    done
}

busybox_root() { # busybox_root DIR
    local r=$1 a
    mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,run,tmp,root,etc}
    cp "$BB" "$r/bin/busybox"
    for a in $("$BB" --list); do [ -e "$r/bin/$a" ] || ln -s busybox "$r/bin/$a"; done
}

# ---------------------------------------------------------------- guest initramfs
G="$NX_OUT/guestroot"
rm -rf "$G"; busybox_root "$G"
# xenstore-read in the guest: the dom0 scenario scripts publish the vGPU's BAR0 and
# expected values under the guest's /local/domain/<id>/data/xengt-test.
put_elf "$G" "$NX_ROOT/usr/bin/xenstore" /usr/bin/xenstore
mkdir -p "$G/lib64"; cp -L /lib64/ld-linux-x86-64.so.2 "$G/lib64/"
for t in read write ls exists; do ln -sf xenstore "$G/usr/bin/xenstore-$t"; done
cp "$NX_DIR/guest/init" "$G/init"; chmod +x "$G/init"
cp "$NX_DIR/guest/vgpu.sh" "$NX_DIR/guest/vgpu-lib.sh" "$G/"
pack "$G" "$NX_OUT/guest.cpio"

# ---------------------------------------------------------------- i915 guest initramfs
# Debian's own i915.ko and its dependencies from the same linux-image package (as-is:
# stripping would drop the signature), in dependency order (from each module's
# .modinfo "depends=", resolved here since the host may lack modinfo), plus i915-store
# (static, built here with gcc) and i-g-t's gem_exec_nop.
KMOD="$NX_ROOT/lib/modules/$KV/kernel"
mod_path() { find "$KMOD" -name "$1.ko" -o -name "$(echo "$1" | tr _ -).ko" | head -n1; }
mod_deps() { grep -a -o 'depends=[a-z0-9_,-]*' "$1" | head -n1 | sed 's/^depends=//' | tr ',' ' '; }
MOD_ORDER=()
mod_add() { # depth-first: dependencies before the module
    local m=$1 f d
    case " ${MOD_ORDER[*]} " in *" $m "*) return 0 ;; esac
    f=$(mod_path "$m"); [ -n "$f" ] || nx_die "module $m not in $KMOD"
    for d in $(mod_deps "$f"); do mod_add "$d"; done
    MOD_ORDER+=("$m")
}
IGT_NOP=/usr/libexec/igt-gpu-tools/benchmarks/gem_exec_nop
build_i915_guest() {
    local I="$NX_OUT/i915root" m
    rm -rf "$I"; busybox_root "$I"
    mkdir -p "$I/lib/modules" "$I/sys/kernel/debug"
    MOD_ORDER=(); mod_add i915
    for m in "${MOD_ORDER[@]}"; do
        [ "$m" = i915 ] && { cp "$(mod_path i915)" "$I/lib/modules/i915.ko"; continue; }
        cp "$(mod_path "$m")" "$I/lib/modules/$m.ko"; echo "$m" >>"$I/lib/modules/order"
    done
    for t in i915-store i915-modeset; do
        gcc -static -O2 -Wall -o "$I/$t" "$NX_DIR/guest/i915/$t.c" || nx_die "cannot build $t (gcc, static libc)"
    done
    # i-g-t's gem_exec_nop (dynamically linked: libigt and its closure, from the prefix or
    # the host; the interpreter is not an ldd "=>" line).
    put_elf "$I" "$NX_ROOT$IGT_NOP" "$IGT_NOP"
    mkdir -p "$I/lib64"; cp -L /lib64/ld-linux-x86-64.so.2 "$I/lib64/"
    cp "$NX_DIR/guest/i915/init" "$I/init"; chmod +x "$I/init"
    pack "$I" "$NX_OUT/i915.cpio"
    nx_log "i915 guest: modules ${MOD_ORDER[*]}; i915.cpio $(du -h "$NX_OUT/i915.cpio" | cut -f1)"
}

# ---------------------------------------------------------------- dom0 initramfs
R="$NX_OUT/dom0root"
rm -rf "$R"; busybox_root "$R"
mkdir -p "$R"/{lib64,etc/xen,var/lib/xen,var/log/xen,var/lib/xenstored,guest,scenarios,lib/modules,lib/x86_64-linux-gnu}
ln -s ../run "$R/var/run"
cp -L /lib64/ld-linux-x86-64.so.2 "$R/lib64/"                 # ldd's "=>" lines miss the interpreter
cp -L /lib/x86_64-linux-gnu/libgcc_s.so.1 "$R/lib/x86_64-linux-gnu/"   # xl aborts without it (pthread_cancel)
for b in xl xenstored xenconsoled xen-init-dom0 xenstore-control xenconsole libxl-save-helper lsevtchn; do
    put_elf "$R" "$NX_ROOT$NX_XENBIN/$b" "$NX_XENBIN/$b"
done
put_elf "$R" "$NX_ROOT/usr/bin/xenstore" /usr/bin/xenstore
for t in read write ls list rm exists chmod watch; do ln -sf xenstore "$R/usr/bin/xenstore-$t"; done
ln -sf "$NX_XENBIN/xl" "$R/usr/sbin/xl"
put_elf "$R" "$(command -v jq || echo "$NX_ROOT/usr/bin/jq")" /usr/bin/jq
# The daemon dlopens libxen*.so.1: ldd cannot see those, so take all of them (and their deps).
for l in "$NX_ROOT"/usr/lib/x86_64-linux-gnu/libxen*.so.*; do
    put_elf "$R" "$l" "/usr/lib/x86_64-linux-gnu/$(basename "$l")"
done
M="$NX_ROOT/lib/modules/$KV/kernel/drivers/xen"
for m in xen-privcmd.ko xenfs/xenfs.ko xen-evtchn.ko xen-gntdev.ko xen-gntalloc.ko; do cp "$M/$m" "$R/lib/modules/"; done
put "$R" /etc/xen/xl.conf
mkdir -p "$R/boot"; cp "$NX_ROOT/usr/lib/debug/boot/xen-syms-4.17-amd64.map" "$R/boot/xen-syms.map"
echo 'root:x:0:0:root:/root:/bin/sh' >"$R/etc/passwd"; echo 'root:x:0:' >"$R/etc/group"

# The project, installed from its .deb (`make deb`; the tiers build it and set XENGT_DEB):
# the binaries with their library closure, the unit, /etc/xengt, docs and man pages, as
# dpkg would lay them out (dom0 has no dpkg or systemd: its init starts the unit's
# ExecStart). Without a .deb (a hand-run harness), the release binaries are taken.
# Missing binaries are reported by the scenarios that need them, not here: the
# infrastructure must still boot.
DEB="${XENGT_DEB:-$(ls "$NX_REPO"/target/debian/xengt_*.deb 2>/dev/null | head -n1)}"
if [ -n "$DEB" ] && [ -s "$DEB" ]; then
    D="$NX_OUT/deb-root"; rm -rf "$D"; mkdir -p "$D"
    dpkg-deb -x "$DEB" "$D" || nx_die "cannot unpack $DEB"
    for b in xengtd xengt-ctl; do
        put_elf "$R" "$D/usr/sbin/$b" "/usr/sbin/$b"; strip --strip-debug "$R/usr/sbin/$b" 2>/dev/null || true
    done
    rm -f "$D/usr/sbin/xengtd" "$D/usr/sbin/xengt-ctl"
    cp -a "$D"/. "$R"/
    nx_log "dom0: installed $(basename "$DEB")"
else
    REL="${XENGT_RELEASE_DIR:-$NX_REPO/target/release}"
    nx_log "warning: no xengt .deb (run make deb); taking the binaries from $REL"
    for b in xengtd xengt-ctl; do
        if [ -x "$REL/$b" ]; then put_elf "$R" "$REL/$b" "/usr/sbin/$b"; strip --strip-debug "$R/usr/sbin/$b" 2>/dev/null || true; else nx_log "warning: $REL/$b not built"; fi
    done
fi

cp "$NX_DIR/dom0/init" "$R/init"; chmod +x "$R/init"
cp "$NX_DIR"/dom0/scenarios/*.sh "$NX_DIR/dom0/common.sh" "$R/scenarios/"
# Kernels: the bzImage's xz payload costs dom0 ~25 s of TCG time to decompress per
# `xl create`, and Xen ~4 s for dom0. So dom0 boots the plain ELF vmlinux (a separate
# multiboot module, not in the cpio) and PVH guests get it gzip'ed (zlib in libxenguest is fast); HVM guests' qemu-xen needs the bzImage.
# The unpacked vmlinux is reused only for the same kernel file: keyed on its version and
# checksum, not on mtimes (dpkg -x keeps the package's old mtimes, so a newer kernel
# fetched later looks older than the vmlinux unpacked before it, and dom0 would boot the
# old kernel with the new kernel's modules: "invalid module format").
VMLINUX="$NX_OUT/vmlinux"
kkey="$KV $(sha256sum "$NX_ROOT/boot/vmlinuz-$KV" | cut -c1-16)"
if [ ! -s "$VMLINUX" ] || [ ! -s "$NX_OUT/vmlinux.gz" ] || [ "$(cat "$VMLINUX.key" 2>/dev/null)" != "$kkey" ]; then
    off=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$NX_ROOT/boot/vmlinuz-$KV" | head -n1 | cut -d: -f1)
    [ -n "$off" ] || nx_die "no xz payload in vmlinuz-$KV"
    # (tail dies of SIGPIPE when xz stops at the end of the stream: judge by the output.)
    tail -c +$((off + 1)) "$NX_ROOT/boot/vmlinuz-$KV" | xz -dc --single-stream >"$VMLINUX.tmp" || true
    [ "$(head -c 4 "$VMLINUX.tmp" | od -An -tx1 | tr -d ' ')" = 7f454c46 ] || nx_die "cannot unpack vmlinux from vmlinuz-$KV"
    mv "$VMLINUX.tmp" "$VMLINUX"
    gzip -1 -c "$VMLINUX" >"$NX_OUT/vmlinux.gz"
    echo "$kkey" >"$VMLINUX.key"
fi
cp "$NX_OUT/vmlinux.gz" "$R/guest/vmlinux.gz"
cp "$NX_OUT/guest.cpio" "$R/guest/guest.cpio"
cp "$NX_DIR"/guest/*.cfg "$R/guest/"

if [ "${NX_WITH_HVM:-0}" = 1 ]; then
    cp "$NX_ROOT/boot/vmlinuz-$KV" "$R/guest/vmlinuz"    # qemu-xen's -kernel wants a bzImage
    put_elf "$R" "$NX_ROOT/usr/libexec/xen-qemu-system-i386" /usr/libexec/xen-qemu-system-i386
    put "$R" /usr/lib/xen-4.17/boot/hvmloader
    put "$R" /usr/share/seabios/bios-256k.bin
    for f in linuxboot_dma.bin linuxboot.bin kvmvapic.bin; do put "$R" "/usr/share/qemu/$f"; done
    for f in vgabios-stdvga.bin vgabios-cirrus.bin; do put "$R" "/usr/share/seabios/$f"; ln -sf "../seabios/$f" "$R/usr/share/qemu/$f"; done
    mkdir -p "$R/usr/share/qemu/keymaps"; cp -L "$NX_ROOT"/usr/share/qemu/keymaps/en-us "$R/usr/share/qemu/keymaps/"   # -vnc none still loads it
    put "$R" /usr/lib/ipxe/qemu/efi-e1000.rom; ln -sf ../../lib/ipxe/qemu/efi-e1000.rom "$R/usr/share/qemu/efi-e1000.rom"
fi
if [ "${NX_WITH_I915:-0}" = 1 ]; then
    [ "${NX_WITH_HVM:-0}" = 1 ] || nx_die "NX_WITH_I915=1 needs NX_WITH_HVM=1 (qemu-xen)"
    build_i915_guest
    cp "$NX_OUT/i915.cpio" "$R/guest/i915.cpio"
fi
pack "$R" "$NX_OUT/dom0.cpio"

# Firmware directory for the outer QEMU (-L).
rm -rf "$NX_OUT/fw"; mkdir -p "$NX_OUT/fw"
for d in "$NX_ROOT/usr/share/qemu" "$NX_ROOT/usr/share/seabios" "$NX_ROOT/usr/lib/ipxe/qemu"; do
    for f in "$d"/*; do [ -e "$NX_OUT/fw/$(basename "$f")" ] || ln -s "$f" "$NX_OUT/fw/"; done
done
zcat "$NX_ROOT/boot/xen-4.17-amd64.gz" >"$NX_OUT/xen"
nx_log "built $NX_OUT/dom0.cpio ($(du -h "$NX_OUT/dom0.cpio" | cut -f1)), guest.cpio ($(du -h "$NX_OUT/guest.cpio" | cut -f1)), kernel $KV"
