#!/usr/bin/env bash
# Download (apt-get download) and unpack (dpkg -x) the Debian packages of the nested-Xen
# harness into $NX_CACHE. Idempotent: a stamp holding the resolved package list makes a
# re-run a no-op. Network is used only when packages are missing from the cache.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

command -v apt-get >/dev/null || nx_die "apt-get not found: this harness needs a Debian 12 (bookworm) host"
mkdir -p "$NX_CACHE/debs" "$NX_ROOT" || nx_die "cannot create cache $NX_CACHE (set XENGT_NESTED_CACHE)"

# Resolve the full dependency closure against an empty dpkg status, so that conflicts with
# host packages (backports qemu-utils Breaks qemu-system-common << 8) do not matter.
resolve() {
    local empty
    empty=$(mktemp)
    # shellcheck disable=SC2086
    apt-get -s -q install --no-install-recommends -o Dir::State::status="$empty" $NX_PACKAGES 2>&1 |
        awk '/^Inst /{print $2}'
    rm -f "$empty"
}

update_lists() {
    nx_log "apt-get update"
    apt-get update -q >/dev/null || nx_die "apt-get update failed"
}
# An empty cache (a fresh machine) resolves against fresh package lists: a machine's lists
# can be older than the archive, and a closure resolved against them names versions that
# are gone (404), or differs from the one the next tier resolves after an update.
[ -n "$(ls -A "$NX_CACHE/debs")" ] || update_lists

# Resolving costs seconds to tens of seconds on a loaded box: keep the answer, keyed on the
# package list and the apt lists it came from.
lists_key() { { echo "$NX_PACKAGES"; ls -l --time-style=+%s /var/lib/apt/lists/ 2>/dev/null; } | sha256sum | cut -c1-16; }
key=$(lists_key)
closure=
if [ -s "$NX_CACHE/closure-$key" ]; then closure=$(cat "$NX_CACHE/closure-$key"); else closure=$(resolve || true); fi
if [ -z "$closure" ]; then
    nx_log "package lists lack our packages"
    update_lists; key=$(lists_key); closure=$(resolve || true)
fi
[ -n "$closure" ] || nx_die "cannot resolve packages: $NX_PACKAGES"
rm -f "$NX_CACHE"/closure-*; echo "$closure" >"$NX_CACHE/closure-$key"

# Our own packages always come from the cache, even if the host has them installed (other
# tiers may apt-get install xen-utils at any time); of the rest, only what the host lacks
# (the host's libc etc. serve ldd and the initramfs).
installed=$(dpkg-query -W -f='${Package} ${Status}\n' 2>/dev/null | awk '/ ok installed$/ {print $1}' | tr '\n' ' ')
plan() {
    need=(); missing=()
    local p
    for p in $closure; do
        case $p in
            xen-* | libxen* | xenstore-* | qemu-* | seabios | ipxe-qemu | busybox-static | cpio | linux-image-* | jq | libjq* | libonig* | intel-gpu-tools)
                need+=("$p"); continue ;;
        esac
        case " $installed " in
            *" $p "*) ;;
            *) need+=("$p") ;;
        esac
    done
    for p in "${need[@]}"; do
        ls "$NX_CACHE/debs/${p}_"*.deb >/dev/null 2>&1 || missing+=("$p")
    done
    stamp="$NX_CACHE/.unpacked-$(printf '%s\n' "${need[@]}" | sort | sha256sum | cut -c1-16)"
}
plan
if [ -e "$stamp" ]; then
    nx_log "cache up to date ($NX_CACHE, ${#need[@]} packages)"
    exit 0
fi
download() { (cd "$NX_CACHE/debs" && apt-get download -q -o APT::Sandbox::User=root "${missing[@]}" >/dev/null); }
if [ ${#missing[@]} -gt 0 ]; then
    nx_log "apt-get download ${#missing[@]} packages"
    if ! download; then
        # The lists named versions the archive no longer has: resolve anew against fresh
        # lists (names can change too, e.g. the kernel's ABI number) and fetch that.
        update_lists; key=$(lists_key); closure=$(resolve || true)
        [ -n "$closure" ] || nx_die "cannot resolve packages: $NX_PACKAGES"
        rm -f "$NX_CACHE"/closure-*; echo "$closure" >"$NX_CACHE/closure-$key"
        plan
        [ ${#missing[@]} -eq 0 ] || download || nx_die "apt-get download failed for: ${missing[*]}"
    fi
fi

rm -rf "$NX_ROOT" && mkdir -p "$NX_ROOT"
for p in "${need[@]}"; do
    deb=$(ls "$NX_CACHE/debs/${p}_"*.deb | sort -V | tail -n1)
    dpkg -x "$deb" "$NX_ROOT" || nx_die "dpkg -x $deb"
done
rm -f "$NX_CACHE"/.unpacked-*
touch "$stamp"
nx_log "unpacked ${#need[@]} packages into $NX_ROOT"
