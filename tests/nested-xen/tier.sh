# Sourced by the nested-Xen tiers (tests/tiers/nested-xen*.sh) from the repository root:
# the start both share. `tier_start NAME` defines phase(), checks that the host can run the
# harness (failing with "FAIL NAME: <reason>", never skipping), builds the xengt .deb
# (`make deb`: release xengtd/xengt-ctl, unit, config, docs, man pages), which mkroot.sh
# installs into the dom0, and fetches the Debian packages.
NX=tests/nested-xen
tier_start() {
    TIER=$1
    t0=$SECONDS
    phase() { printf '[%s tier] %s (t=%ss)\n' "$TIER" "$*" $((SECONDS - t0)); }
    command -v apt-get >/dev/null && command -v dpkg >/dev/null ||
        { echo "FAIL $TIER: needs a Debian 12 host (apt-get, dpkg) to fetch Xen/QEMU/kernel packages"; exit 1; }
    [ "$(uname -m)" = x86_64 ] || { echo "FAIL $TIER: needs an x86_64 host"; exit 1; }
    phase "make deb (xengtd, xengt-ctl, unit, config, docs)"
    mkdir -p target
    make -s deb >target/nested-make-deb.log 2>&1 ||
        { tail -n 20 target/nested-make-deb.log; echo "FAIL $TIER: make deb failed"; exit 1; }
    XENGT_DEB=$(ls "$PWD"/target/debian/xengt_*.deb | head -n1)
    export XENGT_DEB
    phase "fetch Debian packages"
    "$NX/fetch.sh"
}
