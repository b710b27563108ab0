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
# The outer QEMU from another suite (lib.sh, NX_QEMU_SUITE): its own apt lists, cache and
# prefix, so nothing of the host's apt setup changes. Network only on the first run.
fetch_outer_qemu() {
    [ "$NX_QEMU_SUITE" != bookworm ] || return 0
    [ -x "$NX_QROOT/usr/bin/qemu-system-x86_64" ] && [ -s "$NX_QROOT/.closure" ] && return 0
    local A="$NX_CACHE/apt-$NX_QEMU_SUITE" empty q p
    mkdir -p "$A/lists/partial" "$A/cache/archives/partial" "$A/debs"
    # Every entry the host has (bookworm, -updates, -security), plus the suite on the
    # host's bookworm mirror: no archive host is named here.
    apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(COMPONENT)' 'Identifier: Packages' 2>/dev/null |
        sort -u | awk -v s="$NX_QEMU_SUITE" '{print "deb " $1 " " $2 " " $3} $2 == "bookworm" && !m {m = $1}
            END { if (m == "") exit 1; print "deb " m " " s " main" }' >"$A/sources.list" ||
        nx_die "the host's apt sources have no bookworm entry to take $NX_QEMU_SUITE from"
    q=(-o Dir::Etc::sourcelist="$A/sources.list" -o Dir::Etc::sourceparts=/dev/null
        -o Dir::State::Lists="$A/lists" -o Dir::Cache="$A/cache")
    nx_log "outer QEMU from $NX_QEMU_SUITE: apt-get update (private lists)"
    apt-get -q "${q[@]}" update >/dev/null || nx_die "apt-get update for $NX_QEMU_SUITE failed"
    empty=$(mktemp)
    apt-get -s -q "${q[@]}" -o Dir::State::status="$empty" install --no-install-recommends \
        -t "$NX_QEMU_SUITE" qemu-system-x86 2>/dev/null |
        awk '/^Inst /{v = $3; gsub(/[()]/, "", v); print $2 "=" v}' >"$A/closure"
    rm -f "$empty"
    [ -s "$A/closure" ] || nx_die "cannot resolve qemu-system-x86 in $NX_QEMU_SUITE"
    (cd "$A/debs" && apt-get download -q "${q[@]}" -o APT::Sandbox::User=root $(cat "$A/closure") >/dev/null) ||
        nx_die "apt-get download of the outer QEMU from $NX_QEMU_SUITE failed"
    rm -rf "$NX_QROOT" && mkdir -p "$NX_QROOT"
    for p in $(cat "$A/closure"); do
        dpkg -x "$(ls "$A/debs/${p%%=*}_"*.deb | sort -V | tail -n1)" "$NX_QROOT" || nx_die "dpkg -x ${p%%=*}"
    done
    cp "$A/closure" "$NX_QROOT/.closure"
    nx_log "outer QEMU: $(nx_qemu_version)"
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
    fetch_outer_qemu
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
fetch_outer_qemu
