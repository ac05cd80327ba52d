#!/usr/bin/env bash
# The video-clips experiment: the generated motion set, its clip teacher, then the `clips`
# suite (student alone, KD, AT, FitNet, LSTM KD over frames) over SEEDS seeds (default 3).
# Re-running it resumes (or skips) what is already done; finished suite runs are recorded in
# docs/reproducing/clips-quick-runs.json.
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS="${1:-3}"

cargo build --release --quiet
BIN=target/release/lstmkd

[ -d runs/motion-clips ] || "$BIN" make-clips --out runs/motion-clips
echo "== training the clip teacher (configs/motion-teacher.toml)"
if [ -f runs/motion-teacher/last.ckpt ]; then
    "$BIN" train --resume runs/motion-teacher
else
    "$BIN" train --config configs/motion-teacher.toml
fi
"$BIN" eval --checkpoint runs/motion-teacher/best.ckpt
echo "== the clips suite"
"$BIN" experiment --suite clips --config configs/experiments/motion.toml --seeds "$SEEDS"
