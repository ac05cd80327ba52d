#!/usr/bin/env bash
# Same seed, same weights on every x86-64 CPU (docs/DETERMINISM.md): builds lstmkd without
# `x86-v4`, which runs the AVX2 kernels (gemm's FMA kernel, macerator's AVX2 code) even on an
# AVX-512 CPU, beside the default build, trains the same short teacher, adaptation and LSTM-KD
# distillation with both on generated images, and compares the weights bit for bit.
# Run by .ci/run after the suite and the GPU test set, whose builds it reuses: the default one,
# and (SAME_BITS_FEATURES=wgpu) the GPU set's, which leaves out `x86-v4` too.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! grep -qw avx512f /proc/cpuinfo; then
    echo "same_bits: SKIPPED: this CPU has no AVX-512, so both builds would run the same AVX2 kernels"
    exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cargo build --release --bin lstmkd
cp target/release/lstmkd "$work/lstmkd-avx512"
cargo build --release --no-default-features --features "${SAME_BITS_FEATURES:-}" --bin lstmkd
cp target/release/lstmkd "$work/lstmkd-avx2"

# 1,200 training and 200 test images of 28x28 in IDX files: a bright square whose place says
# the class, on noise (Python's own generator, seeded: the same bytes on every machine).
python3 - "$work/data" <<'PY'
import os, random, struct, sys
out = sys.argv[1]
os.makedirs(out)
rng = random.Random(0)
for prefix, n in (("train", 1200), ("t10k", 200)):
    labels = [rng.randrange(10) for _ in range(n)]
    pixels = bytearray()
    for k in labels:
        img = bytearray(rng.randrange(96) for _ in range(784))
        y0, x0 = 4 + 6 * (k // 5), 3 + 5 * (k % 5)
        for y in range(y0, y0 + 6):
            for x in range(x0, x0 + 5):
                img[28 * y + x] = 255
        pixels += img
    with open(f"{out}/{prefix}-images-idx3-ubyte", "wb") as f:
        f.write(struct.pack(">IIII", 2051, n, 28, 28) + pixels)
    with open(f"{out}/{prefix}-labels-idx1-ubyte", "wb") as f:
        f.write(struct.pack(">II", 2049, n) + bytes(labels))
PY

for isa in avx512 avx2; do
    bin=$work/lstmkd-$isa runs=$work/runs-$isa
    common=(--set "data.root=\"$work/data\"" --set train.epochs=1)
    t0=$SECONDS
    "$bin" train --config configs/fmnist-teacher.toml "${common[@]}" \
        --set "train.out_dir=\"$runs/teacher\"" > "$work/$isa.log"
    teacher=(--set "teacher.checkpoint=\"$runs/teacher/best.ckpt\"" --set "train.out_dir=\"$runs/lstmkd\"")
    "$bin" adapt --config configs/fmnist-lstmkd.toml "${common[@]}" "${teacher[@]}" >> "$work/$isa.log"
    "$bin" distill --config configs/fmnist-lstmkd.toml "${common[@]}" "${teacher[@]}" >> "$work/$isa.log"
    for what in teacher/last lstmkd/deployed; do
        "$bin" export --checkpoint "$runs/$what.ckpt" --format safetensors \
            --out "$work/$isa-${what%%/*}.safetensors" > /dev/null
    done
    echo "same_bits: $isa build: teacher, adaptation and distillation in $((SECONDS - t0)) s"
done
status=0
for what in teacher lstmkd; do
    a=$(sha256sum < "$work/avx512-$what.safetensors") b=$(sha256sum < "$work/avx2-$what.safetensors")
    if [ "$a" = "$b" ]; then
        echo "same_bits: $what: the same weights bit for bit (${a%% *})"
    else
        echo "same_bits: $what: the AVX2 and AVX-512 builds trained different weights" >&2
        status=1
    fi
done
exit $status
