#!/usr/bin/env bash
# Quickstart: Fashion-MNIST from Debian's package, a release build, a teacher trained and
# evaluated, then a student distilled from it with LSTM KD next to the same student trained
# alone. Re-running it resumes (or skips) what is already done.
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

run() { # command config run_dir
    # A run that stopped before its first checkpoint holds config.toml only: it resumes too.
    if [ -f "$3/config.toml" ]; then
        "$BIN" "$1" --resume "$3"
    else
        "$BIN" "$1" --config "$2"
    fi
}

echo "== training the teacher (configs/fmnist-teacher.toml)"
run train configs/fmnist-teacher.toml runs/fmnist-teacher
echo "== evaluating the teacher on the test set"
"$BIN" eval --checkpoint runs/fmnist-teacher/best.ckpt

echo "== fitting the teacher's extractors (teacher adaptation)"
[ -f runs/fmnist-teacher/adapt/best.ckpt ] || "$BIN" adapt --config configs/fmnist-lstmkd.toml
echo "== distilling the student with LSTM KD (configs/fmnist-lstmkd.toml)"
run distill configs/fmnist-lstmkd.toml runs/fmnist-lstmkd
echo "== training the same student alone (configs/fmnist-student.toml)"
run train configs/fmnist-student.toml runs/fmnist-student

acc() { "$BIN" eval --checkpoint "$1" | awk '/^top-1/ {print $2}'; }
echo
echo "== test top-1 on Fashion-MNIST"
printf '%-34s %s\n' "teacher (resnet14)" "$(acc runs/fmnist-teacher/best.ckpt)"
printf '%-34s %s\n' "student alone (resnet8)" "$(acc runs/fmnist-student/best.ckpt)"
printf '%-34s %s\n' "student with LSTM KD (resnet8)" "$(acc runs/fmnist-lstmkd/deployed.ckpt)"
