#!/usr/bin/env bash
# An imported PyTorch teacher end to end: torchvision's resnet18 trained briefly by PyTorch on
# Fashion-MNIST written as an ImageFolder, imported with `lstmkd import`, a ResNet-8 student
# distilled from it with LSTM KD, exported to ONNX, and `predict` on a few images.
# Needs the PyTorch venv (created here from scripts/torch/requirements.txt when missing) and
# Debian's dataset-fashion-mnist (as the quickstart installs it). Re-running skips what is done.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=scripts/torch/.venv/bin/python
if [ ! -x "$PY" ]; then
    echo "== creating the PyTorch venv (scripts/torch/requirements.txt)"
    python3 -m venv scripts/torch/.venv
    "$PY" -m pip install -q -r scripts/torch/requirements.txt
fi
cargo build --release --quiet
BIN=target/release/lstmkd
DATA=runs/fmnist-imagefolder
CFG=configs/fmnist-imported-lstmkd.toml

if [ ! -f "$DATA/teacher.pth" ]; then
    echo "== PyTorch: Fashion-MNIST as an ImageFolder, torchvision resnet18 trained on it"
    "$PY" scripts/torch/train_resnet18_fmnist.py --data "$DATA" --out "$DATA/teacher.pth"
fi
if [ ! -f runs/imported/teacher.ckpt ]; then
    echo "== importing the PyTorch teacher"
    # Trained on 28x28 images resized to 32x32 (no crop): --resize 0 says the same.
    "$BIN" import --model resnet18 --weights "$DATA/teacher.pth" --input 3x32x32 --resize 0 \
        --class-names "$DATA/classes.txt" --out runs/imported/teacher.ckpt
fi
echo "== the imported teacher on the ImageFolder's val split"
"$BIN" eval --checkpoint runs/imported/teacher.ckpt --data "$DATA"

echo "== teacher adaptation and LSTM-KD distillation ($CFG)"
[ -f runs/imported/adapt-teacher/best.ckpt ] || "$BIN" adapt --config "$CFG"
if [ -f runs/imported-lstmkd/config.toml ]; then
    "$BIN" distill --resume runs/imported-lstmkd
else
    "$BIN" distill --config "$CFG"
fi
"$BIN" eval --checkpoint runs/imported-lstmkd/deployed.ckpt

echo "== exporting the student to ONNX and classifying a few images"
"$BIN" export --checkpoint runs/imported-lstmkd/deployed.ckpt --format onnx \
    --out runs/imported-lstmkd/student.onnx --force
"$BIN" predict --checkpoint runs/imported-lstmkd/deployed.ckpt --top 3 \
    "$DATA/val/Bag/$(ls "$DATA/val/Bag" | head -1)" \
    "$DATA/val/Sneaker/$(ls "$DATA/val/Sneaker" | head -1)" \
    "$DATA/val/Trouser/$(ls "$DATA/val/Trouser" | head -1)"
