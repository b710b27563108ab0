# Sourced by the guest /init: raw accesses to a vGPU's BAR0 with busybox devmem, and the
# bystander's watch loop. Only prints what it observes ("GUEST-<WHAT> key=value ...").
hex() { printf '0x%x' "$1"; }
rd() { $B devmem "$(hex "$1")" "$2" 2>/dev/null || echo ERR; }
wr() { $B devmem "$(hex "$1")" "$2" "$(hex "$3")" 2>/dev/null || echo "GUEST-WARN write $(hex "$1") failed"; }
num() { case $1 in 0x*) echo $(($1)) ;; *) echo -1 ;; esac; }

# watch_vgpu BAR0 GGTT_INDEX SECONDS: the bystander of the i915 bad-input scenario. Every
# SECONDS it checks that its vGPU still answers as it should while another guest abuses
# its own: the PVINFO magic (gen9-vgpu.md §2), a guest-writable PVINFO field
# (display_ready) and entry GGTT_INDEX of its own GGTT window read back what was written.
# One "GUEST-WATCH round=N errors=E" line per round; never returns.
watch_vgpu() {
    local pv=$(($1 + 0x78000)) gt=$(($1 + 0x800000)) idx=$2 r=0 e=0 bad v p
    while :; do
        r=$((r + 1)); bad=
        [ "$(num "$(rd $pv 64)")" = $((0x4776544776544776)) ] || bad="$bad magic"
        v=$((r & 1)); wr $((pv + 0x804)) 32 $v
        [ "$(num "$(rd $((pv + 0x804)) 32)")" = $v ] || bad="$bad display_ready"
        p=$(( ((0x200 + r % 64) << 12) | 1 )); wr $((gt + 8 * idx)) 64 $p
        [ "$(num "$(rd $((gt + 8 * idx)) 64)")" = $p ] || bad="$bad ggtt"
        [ -z "$bad" ] || e=$((e + 1))
        echo "GUEST-WATCH round=$r errors=$e${bad:+ bad=$bad} uptime=$(up)"
        $B sleep "$3"
    done
}
