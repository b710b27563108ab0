# xlinfo: dom0 is up, xenstored answers and Xen offers HVM with HAP (needed for PVH/HVM guests).
. /scenarios/common.sh
xl info >/tmp/xlinfo.txt 2>&1 || { cat /tmp/xlinfo.txt; fail "xl info failed"; }
cat /tmp/xlinfo.txt
grep -q '^xen_version *: 4\.17' /tmp/xlinfo.txt || fail "unexpected xen_version"
grep -q '^virt_caps *:.*hvm.*hap' /tmp/xlinfo.txt || fail "virt_caps lacks hvm/hap: $(grep virt_caps /tmp/xlinfo.txt)"
xenstore-read /local/domain/0/name >/dev/null || fail "xenstore-read of dom0 name failed"
