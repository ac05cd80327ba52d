#!/usr/bin/env bash
# How busy `lstmkd train` keeps the CPU: the process's CPU time (user + system, all threads)
# over 10 s of the first epoch of configs/fmnist-student.toml, as a share of all cores, after a
# few seconds of start-up. Spinning threads would count as busy too, so compare the steps done
# (printed) between builds as well.
#
#   bash bench/cpu_busy.sh [LSTMKD_BINARY] [WARMUP_S] [WINDOW_S]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/lstmkd}
WARMUP=${2:-6}
WINDOW=${3:-10}
[ -x "$BIN" ] || { echo "$BIN: not found; run cargo build --release first" >&2; exit 1; }
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
"$BIN" train --config configs/fmnist-student.toml --set train.out_dir=\""$OUT/run"\" \
    > "$OUT/log" 2>&1 &
PID=$!
ticks() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
sleep "$WARMUP"
t0=$(ticks); s0=$(date +%s.%N)
sleep "$WINDOW"
t1=$(ticks); s1=$(date +%s.%N)
kill "$PID"; wait "$PID" 2>/dev/null || true
python3 - "$t0" "$t1" "$s0" "$s1" "$(getconf CLK_TCK)" "$(nproc)" <<'EOF'
import sys
t0, t1, s0, s1, hz, cores = map(float, sys.argv[1:])
busy = (t1 - t0) / hz / (s1 - s0)
print(f"CPU busy: {100 * busy / cores:.1f}% of {int(cores)} cores ({busy:.2f} cores) over {s1 - s0:.1f} s")
EOF
tr '\r' '\n' < "$OUT/log" | grep -oE "interrupted after step [0-9]+/[0-9]+|epoch [0-9]+/[0-9]+ lr.*img/s" | tail -2
