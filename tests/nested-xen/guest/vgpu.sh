# Sourced by the guest /init in mode xgtest=vgpu: raw accesses to the vGPU's BAR0 with
# busybox devmem. Only prints what it observes ("GUEST-<WHAT> key=value ..."); the dom0
# scenario scripts compare it with `xengt-ctl info --json`.
# (hex, rd, wr: vgpu-lib.sh, sourced by /init.)

# Parameters from dom0: data/xengt-test/params = "bar0=N low_base=N low_size=N high_base=N high_size=N".
i=0
while :; do
    PARAMS=$(xenstore-read data/xengt-test/params 2>/dev/null) && break
    i=$((i + 1)); [ $i -lt 600 ] || { echo "GUEST-ERROR no data/xengt-test/params in XenStore"; return; }
    $B sleep 1
done
for kv in $PARAMS; do eval "P_${kv%%=*}=${kv#*=}"; done
BAR0=$P_bar0
echo "GUEST-PARAMS bar0=$(hex "$BAR0") uptime=$(up)"

# --- pvinfo: PVINFO page at BAR0 + 0x78000 (gen9-vgpu.md §2)
PV=$((BAR0 + 0x78000))
magic=$(rd $PV 64)
vmaj=$(rd $((PV + 0x8)) 16); vmin=$(rd $((PV + 0xa)) 16); caps=$(rd $((PV + 0x10)) 32)
lb=$(rd $((PV + 0x40)) 32); ls=$(rd $((PV + 0x44)) 32); hb=$(rd $((PV + 0x48)) 32); hs=$(rd $((PV + 0x4c)) 32)
fences=$(rd $((PV + 0x50)) 32)
echo "GUEST-PVINFO magic=$magic ver_major=$vmaj ver_minor=$vmin caps=$caps low_base=$lb low_size=$ls high_base=$hb high_size=$hs fences=$fences"
# A guest-writable field (display_ready) reads back what was written; a host-owned one
# (magic) ignores the write.
dr0=$(rd $((PV + 0x804)) 32); wr $((PV + 0x804)) 32 1; dr1=$(rd $((PV + 0x804)) 32)
wr $PV 32 0x12345678; magic2=$(rd $PV 64)
echo "GUEST-RW display_ready_before=$dr0 display_ready_after=$dr1 magic_after_write=$magic2"

# --- ggtt: PTE window at BAR0 + 0x800000, entry i covers GGTT address i*4096 (§4.3)
GT=$((BAR0 + 0x800000))
in_idx=$(( (P_low_base >> 12) + 1 ))
# An index in neither window: just below the lower window, or just above the higher one.
lo=$P_low_base; hi_end=$((P_high_base + P_high_size)); lo_end=$((P_low_base + P_low_size))
[ $P_high_base -lt $lo ] && lo=$P_high_base
[ $lo_end -gt $hi_end ] && hi_end=$lo_end
if [ $lo -ge 4096 ]; then out_idx=$(( (lo >> 12) - 1 )); else out_idx=$((hi_end >> 12)); fi
pte=$((0x200000 | 1))   # guest RAM page 0x200000, present
wr $((GT + 8 * in_idx)) 64 $pte; in_rd=$(rd $((GT + 8 * in_idx)) 64)
wr $((GT + 8 * out_idx)) 64 $pte; out_rd=$(rd $((GT + 8 * out_idx)) 64)
echo "GUEST-GGTT in_idx=$in_idx out_idx=$out_idx written=$(hex $pte) in_read=$in_rd out_read=$out_rd"

# --- fuzz-bars: xgfuzz random reads/writes of random width anywhere in BAR0's 16 MiB
# (one busybox exec per access, decimal addresses: every fork costs under nested TCG).
count=$(arg xgfuzz); count=${count:-40}
n=0; errs=0
while [ $n -lt "$count" ]; do
    off=$(( ((RANDOM << 15) ^ RANDOM) & 0xffffff ))
    case $((RANDOM % 4)) in 0) w=8 ;; 1) w=16 ;; 2) w=32 ;; *) w=64 ;; esac
    off=$(( off & ~(w / 8 - 1) ))
    if [ $((RANDOM % 2)) = 0 ]; then
        $B devmem $((BAR0 + off)) $w >/dev/null 2>&1 || errs=$((errs + 1))
    else
        $B devmem $((BAR0 + off)) $w $(( (RANDOM << 30) ^ (RANDOM << 15) ^ RANDOM )) 2>/dev/null || errs=$((errs + 1))
    fi
    n=$((n + 1))
done
# The device still answers after the storm.
magic3=$(rd $PV 64)
echo "GUEST-FUZZ-DONE accesses=$n errors=$errs magic_after=$magic3 uptime=$(up)"

# --- watch (xgwatch=SECONDS): see watch_vgpu in vgpu-lib.sh.
W=$(arg xgwatch)
[ -z "$W" ] || watch_vgpu "$BAR0" $((in_idx + 1)) "$W"
