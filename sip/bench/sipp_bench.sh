#!/bin/sh
# sipp_bench.sh — drive a running nkbridge SIP listener with SIPp at increasing call rates and
# print one table row per rate: calls attempted/completed/failed, achieved rate, mean and max
# INVITE→200 response time, and the share of calls answered within 200 ms.
#
# Usage: sip/bench/sipp_bench.sh [TARGET] [RATES] [SECONDS_PER_STEP] [HOLD_MS] [SERVICE]
#   TARGET  host:port of nkbridge (default 127.0.0.1:5060; loopback only)
#   RATES   space-separated calls/s (default "100 200 400 800")
#   SECONDS each step runs this long (default 10); calls per step = rate * seconds (bounded)
#   HOLD_MS how long each call is held before BYE (default 1000)
#   SERVICE the called user/extension (default echo)
# nkbridge must accept INVITEs from 127.0.0.1 without auth (configure 127.0.0.1/32 as a trunk).
set -eu
TARGET=${1:-127.0.0.1:5060}
RATES=${2:-"100 200 400 800"}
SECS=${3:-10}
HOLD=${4:-1000}
SERVICE=${5:-echo}
case "$TARGET" in 127.*) ;; *) echo "refusing non-loopback target $TARGET" >&2; exit 2;; esac
SCEN=$(cd "$(dirname "$0")/../../testdata/sipp" && pwd)/bench_uac.xml
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
printf '%-8s %-8s %-9s %-7s %-10s %-9s %-9s %-8s\n' rate calls completed failed achieved/s mean_ms max_ms "<200ms%"
for R in $RATES; do
  N=$((R * SECS)); [ "$N" -gt 100000 ] && N=100000
  LIMIT=$((R * (HOLD / 1000 + 2) + 100))
  ( cd "$WORK" && rm -f ./*.csv ./*_rtt.csv && \
    sipp -sf "$SCEN" -s "$SERVICE" "$TARGET" -i 127.0.0.1 -mi 127.0.0.1 -p 0 -cp 0 -nostdin \
      -r "$R" -m "$N" -l "$LIMIT" -d "$HOLD" -timeout $((SECS * 3 + 30)) -timeout_error \
      -trace_stat -stf stat.csv -fd 1 -trace_rtt -rtt_freq 1 >/dev/null 2>&1 ) || true
  STAT="$WORK/stat.csv"; RTT=$(ls "$WORK"/*_rtt.csv 2>/dev/null | head -1 || true)
  if [ ! -s "$STAT" ]; then printf '%-8s (sipp produced no statistics)\n' "$R"; continue; fi
  awk -F';' -v rate="$R" -v n="$N" -v rtt="$RTT" '
    NR==1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
    { last = $0 }
    END {
      split(last, f, ";")
      ok = f[col["SuccessfulCall(C)"]] + 0; bad = f[col["FailedCall(C)"]] + 0
      el = f[col["ElapsedTime(C)"]]; split(el, t, ":"); secs = t[1] * 3600 + t[2] * 60 + t[3]
      ach = secs > 0 ? (ok + bad) / secs : 0
      mean = 0; mx = 0; under = 0; cnt = 0
      if (rtt != "") {
        while ((getline line < rtt) > 0) {
          m = split(line, g, ";"); v = g[2] + 0
          if (g[1] !~ /^[0-9.]+$/) continue
          cnt++; mean += v; if (v > mx) mx = v; if (v < 200) under++
        }
      }
      if (cnt > 0) { mean /= cnt; pct = 100 * under / cnt } else pct = 0
      printf "%-8s %-8d %-9d %-7d %-10.1f %-9.1f %-9.1f %-8.1f\n", rate, n, ok, bad, ach, mean, mx, pct
    }' "$STAT"
done
