# tf-soak (issue 16; opt-in, not in CI: XENGT_NESTED_SCENARIOS=tf-soak): do HVM guests
# triple-fault under nested TCG without the vGPU? Starts PLAIN HVM guests with no vGPU
# (bystander.cfg without its vgt keys: xen_nopv, nokaslr, one vCPU, a serial heartbeat every
# 3 s) beside VGPU guests that are the bystander itself (a vGPU, its watch loop every
# second), runs them for SECONDS, and reports every death with what Xen logged of it
# (xen_death: the triple-fault line, RIP with its symbol, rsp, cr2). Dom0 command-line
# argument soak=PLAIN:VGPU:SECONDS (run.sh: NX_DOM0_EXTRA), default 4:1:1200.
# Fails when any guest died; the SOAK lines are the measurement either way.
. /scenarios/common.sh
arg() { sed -n "s/.*[ ]$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
spec=$(arg soak); spec=${spec:-4:1:1200}
P=${spec%%:*}; rest=${spec#*:}; V=${rest%%:*}; T=${rest#*:}
start_daemon
mk() { # mk NAME WITH_VGPU WATCH_SECONDS: a copy of the bystander's config
    sed -e "s/^name = .*/name = \"$1\"/" -e "s|/var/log/xen/bystander-serial.log|/var/log/xen/$1-serial.log|" \
        -e "s/xgwatch=3/xgwatch=$3/" /guest/bystander.cfg >/tmp/$1.cfg
    [ "$2" = 1 ] || sed -i '/^vgt/d' /tmp/$1.cfg
}
names=; t0=$(up)
i=0; while [ $i -lt "$P" ]; do
    i=$((i + 1)); n=plain$i; mk $n 0 3
    xl create /tmp/$n.cfg >/tmp/create-$n.out 2>&1 || fail "xl create $n: $(tail -n1 /tmp/create-$n.out)"
    names="$names $n"
done
i=0; while [ $i -lt "$V" ]; do
    i=$((i + 1)); n=vgpu$i; mk $n 1 1
    xengt-ctl create /tmp/$n.cfg >/tmp/create-$n.out 2>&1 || fail "xengt-ctl create $n: $(tail -n1 /tmp/create-$n.out)"
    names="$names $n"
done
for n in $names; do echo "$(xl domid $n)" >$ST/soak-$n; done
say "started$names; soaking ${T}s"
el=0; deaths=0
while [ $el -lt "$T" ]; do
    sleep 10; el=$((el + 10))
    for n in $names; do
        d=$(cat $ST/soak-$n); [ -e $ST/soak-dead-$n ] && continue
        xenstore-exists "/local/domain/$d" 2>/dev/null && continue
        deaths=$((deaths + 1)); echo "$el" >$ST/soak-dead-$n
        say "DEATH $n (domain $d) after ~${el}s of soak; Xen: $(xen_death "$d"); last: $(grep '^GUEST-' "$(console_log $n)" | tail -n1)"
    done
done
summary() { # summary GROUP PREFIX
    local g=0 dead=0 secs=0 n
    for n in $names; do
        case $n in "$2"*) ;; *) continue ;; esac
        g=$((g + 1))
        if [ -e $ST/soak-dead-$n ]; then dead=$((dead + 1)); secs=$((secs + $(cat $ST/soak-dead-$n))); else secs=$((secs + T)); fi
    done
    say "SOAK $1 guests=$g guest_minutes=$((secs / 60)) deaths=$dead"
}
summary "no-vGPU" plain; summary "vGPU" vgpu
for n in $names; do
    [ -e $ST/soak-dead-$n ] || say "$n alive: $(grep '^GUEST-' "$(console_log $n)" | tail -n1)"
    xl destroy "$(cat $ST/soak-$n)" 2>/dev/null
done
bad=$(grep -h '^GUEST-WATCH .*bad=' /var/log/xen/vgpu*-serial.log 2>/dev/null | head -n1)
[ -z "$bad" ] || fail "a vGPU guest saw a wrong answer: $bad"
[ "$deaths" = 0 ] || fail "$deaths of $((P + V)) guests died in ${T}s (the DEATH lines above)"
exit 0
