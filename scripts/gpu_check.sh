#!/usr/bin/env bash
# The GPU check of BENCHMARKS.md ("GPU"), in two halves for a GPU machine that has no Rust
# toolchain and no network:
#
#   bash scripts/gpu_check.sh prepare   # here: the `wgpu` binary, Vulkan's loader and a data
#                                       # subset, into .gpu/ (ignored by git; carry it)
#   bash scripts/gpu_check.sh run OUT   # there, as root, with a python3 that has CUDA PyTorch
#
# `run` benches both pairs against PyTorch on the same GPU (bench/compare.py) and runs one
# short teacher -> adapt -> LSTM-KD distillation on 2,000 Fashion-MNIST images, with cubecl's
# autotuning at its minimal level so that tuning does not eat the time. It prints everything
# and keeps a copy in OUT/gpu_check.log (OUT defaults to runs/gpu-check).
#
# The `wgpu` build (WGSL kernels), not `cuda`: burn 0.22's cuda backend (cubecl-cuda 0.11) needs
# an LLVM bundle that its build script downloads from GitHub, which this machine cannot reach;
# and not `vulkan` (SPIR-V), which crashes lavapipe (docs/BACKENDS.md) and has never met a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."

GPU_DIR=.gpu
# The stripped wgpu binary is about 134 MB, over the 64 MiB a GPU machine receives: it
# travels xz-compressed (24.3 MB, measured 2026-12-07) and is unpacked there.
PACKED=$GPU_DIR/lstmkd.xz
BIN=${BIN:-/tmp/lstmkd-gpu}
DATA=$GPU_DIR/fmnist-2k
# Overridable to rehearse `run` without a GPU (DEVICE=flex PYTHON=<a venv with torch>;
# SKIP_BENCH=1 leaves out the benches, which take about 20 minutes on a 2-core CPU;
# REHEARSE=1 trains one epoch each on 480 images at batch 16, the shapes lavapipe sums right:
# it ends every GPU loop after 65,535 iterations, which a full batch's batch norm exceeds).
DEVICE=${DEVICE:-wgpu}
PYTHON=${PYTHON:-python3}

prepare() {
    cargo build --release --features wgpu --target-dir target/gpu
    mkdir -p "$GPU_DIR/gl"
    strip -o "$GPU_DIR/lstmkd" target/gpu/release/lstmkd
    xz -T0 -6 -f "$GPU_DIR/lstmkd"
    # Vulkan's loader (the NVIDIA driver there brings the rest), as Debian packages.
    local lists=/tmp/gpu-check-apt-lists
    mkdir -p "$lists/partial"
    local apt=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 "-oDir::State::Lists=$lists")
    apt-get "${apt[@]}" update -qq
    (cd "$GPU_DIR/gl" && apt-get "${apt[@]}" download libvulkan1)
    # The first 2,000 training and 1,000 test images of Fashion-MNIST, as IDX files.
    python3 - "$DATA" <<'EOF'
import gzip, os, struct, sys
out = sys.argv[1]
src = "/usr/share/datasets/fashion-mnist"
os.makedirs(out, exist_ok=True)
for prefix, n in (("train", 2000), ("t10k", 1000)):
    for kind, ndims in (("images-idx3", 3), ("labels-idx1", 1)):
        with gzip.open(f"{src}/{prefix}-{kind}-ubyte.gz") as f:
            raw = f.read()
        dims = list(struct.unpack(f">{ndims}I", raw[4:4 + 4 * ndims]))
        item = 1
        for d in dims[1:]:
            item *= d
        dims[0] = n
        body = raw[4 + 4 * ndims:][: n * item]
        with open(f"{out}/{prefix}-{kind}-ubyte", "wb") as f:
            f.write(raw[:4] + struct.pack(f">{ndims}I", *dims) + body)
EOF
    grep -qxF "/$GPU_DIR/" .git/info/exclude 2>/dev/null || echo "/$GPU_DIR/" >> .git/info/exclude
    du -sh "$GPU_DIR"
    echo "prepared $GPU_DIR; on the GPU machine (carry $GPU_DIR): bash scripts/gpu_check.sh run \$OUT"
}

run() {
    local out=${1:-runs/gpu-check}
    mkdir -p "$out"
    exec > >(tee "$out/gpu_check.log") 2>&1
    "$PYTHON" -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$PACKED" "$BIN"
    chmod +x "$BIN"
    "$BIN" --version
    if [ "${DEVICE%%:*}" = wgpu ] || [ "${DEVICE%%:*}" = vulkan ]; then
        for f in "$GPU_DIR"/gl/*.deb; do dpkg -x "$f" /; done
        ldconfig
        local icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
        [ -f "$icd" ] && export VK_DRIVER_FILES=$icd
    fi
    export CUBECL_AUTOTUNE_LEVEL=minimal
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
    "$PYTHON" -c 'import torch; print("torch", torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name(0))' \
        || echo "no PyTorch in $PYTHON: the benches against it cannot run"

    if [ -z "${SKIP_BENCH:-}" ]; then
        echo "== resnet32x4 -> resnet8x4, 3x32x32 (the paper's extractor)"
        python3 bench/compare.py --repeats 3 --lstmkd "$BIN" --device "$DEVICE" --python "$PYTHON" -- --steps 10
        echo "== resnet14 -> resnet8, 1x28x28 (the quickstart's pair and extractor)"
        python3 bench/compare.py --repeats 3 --lstmkd "$BIN" --device "$DEVICE" --python "$PYTHON" -- \
            --steps 20 --teacher resnet14 --student resnet8 --input 1x28x28 --classes 10 \
            --conv-channels 32 --hidden 64
        echo "== the paper's pair in mixed precision (train.precision = f16), lstmkd alone"
        "$BIN" bench --device "$DEVICE" --steps 10 --set 'train.precision="f16"' \
            --json "$out/bench-f16.json"
    fi

    echo "== one short distillation on 2,000 images (teacher, adapt, LSTM KD; 2 epochs each, 1 rehearsing)"
    local runs=$out/runs
    local common=(--set "data.root=\"$DATA\"" --set "train.device=\"$DEVICE\"")
    if [ -n "${REHEARSE:-}" ]; then
        # One epoch each: on lavapipe a command's first epoch is mostly kernel compilation, and
        # the second added 141 s to a rehearsal that has to fit in 10 minutes.
        common+=(--set train.epochs=1 --set data.limit_train=480 --set train.batch_size=16
            --set train.eval_batch_size=100)
    else
        common+=(--set train.epochs=2)
    fi
    local t0=$SECONDS
    "$BIN" train --config configs/fmnist-teacher.toml "${common[@]}" \
        --set "train.out_dir=\"$runs/teacher\""
    local teacher=(--set "teacher.checkpoint=\"$runs/teacher/best.ckpt\"" --set "train.out_dir=\"$runs/lstmkd\"")
    "$BIN" adapt --config configs/fmnist-lstmkd.toml "${common[@]}" "${teacher[@]}"
    "$BIN" distill --config configs/fmnist-lstmkd.toml "${common[@]}" "${teacher[@]}"
    "$BIN" eval --checkpoint "$runs/lstmkd/deployed.ckpt" --device "$DEVICE"
    echo "distillation check: $((SECONDS - t0)) s in all"
}

case "${1:-}" in
    prepare) prepare ;;
    run) run "${2:-}" ;;
    *) echo "usage: bash scripts/gpu_check.sh prepare | run [OUT]" >&2; exit 2 ;;
esac
