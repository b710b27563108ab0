#!/usr/bin/env bash
# extract.sh LOG OUTDIR: decode every "=== B64-BEGIN NAME" ... "=== B64-END NAME" block of a
# nested-Xen serial log (gzip'ed base64 written by dom0's b64_out) into OUTDIR/NAME.
# Prints the names written; exits 0 even if there are none.
set -euo pipefail
LOG=$1; OUT=$2
mkdir -p "$OUT"
names=$(tr -d '\r' <"$LOG" | sed -n 's/^\[[^]]*\] === B64-BEGIN \(.*\)$/\1/p' | sort -u)
for n in $names; do
    case $n in */* | .* | "") echo "skipping suspicious name '$n'" >&2; continue ;; esac
    tr -d '\r' <"$LOG" | sed 's/^\[[^]]*\] //' |
        awk -v n="$n" '$0 == "=== B64-BEGIN " n {on=1; next} $0 == "=== B64-END " n {on=0} on' |
        base64 -d 2>/dev/null | gunzip -c >"$OUT/$n.tmp" 2>/dev/null && mv "$OUT/$n.tmp" "$OUT/$n" &&
        echo "$OUT/$n" || { rm -f "$OUT/$n.tmp"; echo "cannot decode $n" >&2; }
done
