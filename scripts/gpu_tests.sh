#!/usr/bin/env bash
# The GPU test set (tests/suite/gpu.rs): burn's wgpu runtime against flex. Without a GPU it
# runs on lavapipe, Mesa's Vulkan driver on the CPU, installed here from Debian; with one, set
# LSTMKD_GPU (e.g. `LSTMKD_GPU=wgpu bash scripts/gpu_tests.sh`).
# The `wgpu` feature (WGSL kernels), not `vulkan` (SPIR-V): lavapipe crashes compiling burn's
# SPIR-V kernels (docs/BACKENDS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${LSTMKD_GPU:-}" ] && ! dpkg -s mesa-vulkan-drivers libvulkan1 >/dev/null 2>&1; then
    apt-get install -y -q --no-install-recommends mesa-vulkan-drivers libvulkan1 \
        || { apt-get update -q && apt-get install -y -q --no-install-recommends mesa-vulkan-drivers libvulkan1; }
fi
# The Vulkan loader asks for a runtime folder; a session without one gets a private one.
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$(mktemp -d)}
# Without `x86-v4`: flex runs its AVX2 kernels here, which give the same bits as the default
# build's (docs/DETERMINISM.md), and CI reuses this build as scripts/same_bits.sh's AVX2 one.
cargo test --release --no-default-features --features wgpu --test suite gpu::
