#!/usr/bin/env bash
# Quickstart: Fashion-MNIST from Debian's package, a release build, a teacher trained and
# evaluated on the test set. Re-running it resumes (or skips) what is already done.
set -euo pipefail
cd "$(dirname "$0")/.."

DATA=/usr/share/datasets/fashion-mnist
if [ ! -f "$DATA/train-images-idx3-ubyte.gz" ]; then
    echo "== installing dataset-fashion-mnist (Debian package)"
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq dataset-fashion-mnist
fi

echo "== building lstmkd (release)"
cargo build --release --quiet
BIN=target/release/lstmkd

train() { # config run_dir
    if [ -f "$2/last.ckpt" ]; then
        "$BIN" train --resume "$2"
    else
        "$BIN" train --config "$1"
    fi
}

echo "== training the teacher (configs/fmnist-teacher.toml)"
train configs/fmnist-teacher.toml runs/fmnist-teacher
echo "== evaluating the teacher on the test set"
"$BIN" eval --checkpoint runs/fmnist-teacher/best.ckpt
