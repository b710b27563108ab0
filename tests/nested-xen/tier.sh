# Sourced by the nested-Xen tiers (tests/tiers/nested-xen*.sh) from the repository root:
# the start both share. `tier_start NAME` defines phase(), checks that the host can run the
# harness (failing with "FAIL NAME: <reason>", never skipping), builds xengtd/xengt-ctl in
# release mode and fetches the Debian packages.
NX=tests/nested-xen
tier_start() {
    TIER=$1
    t0=$SECONDS
    phase() { printf '[%s tier] %s (t=%ss)\n' "$TIER" "$*" $((SECONDS - t0)); }
    command -v apt-get >/dev/null && command -v dpkg >/dev/null ||
        { echo "FAIL $TIER: needs a Debian 12 host (apt-get, dpkg) to fetch Xen/QEMU/kernel packages"; exit 1; }
    [ "$(uname -m)" = x86_64 ] || { echo "FAIL $TIER: needs an x86_64 host"; exit 1; }
    phase "cargo build --release (xengtd, xengt-ctl)"
    cargo build --release -p xengt -p xengt-tools 2>&1 | tail -n 3 ||
        { echo "FAIL $TIER: cargo build --release failed"; exit 1; }
    phase "fetch Debian packages"
    "$NX/fetch.sh"
}
