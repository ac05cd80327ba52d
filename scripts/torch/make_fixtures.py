#!/usr/bin/env python3
"""Writes the PyTorch fixtures the Rust suite checks lstmkd against (tests/fixtures/).

resnet8_torch.safetensors: RepDistiller's CIFAR resnet8 (3 classes) with seeded random
weights and batch-norm statistics, saved by safetensors from PyTorch's own state_dict.
resnet8_torch_logits.json: PyTorch's eval-mode logits of that network for two inputs given by
a formula the test recomputes: x[n, c, h, w] = ((n * 7 + c * 5 + h * 3 + w) % 17) / 8 - 1.

Usage: scripts/torch/.venv/bin/python scripts/torch/make_fixtures.py
"""

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))
import zoo  # noqa: E402

OUT = Path(__file__).resolve().parents[2] / "tests" / "fixtures"


def main():
    model = zoo.randomize_(zoo.build("resnet8", 3), seed=11)
    idx = torch.arange(2 * 3 * 32 * 32).reshape(2, 3, 32, 32)
    n, c = idx // (3 * 32 * 32), (idx // (32 * 32)) % 3
    h, w = (idx // 32) % 32, idx % 32
    x = ((n * 7 + c * 5 + h * 3 + w) % 17).float() / 8 - 1
    with torch.no_grad():
        logits = model(x)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, OUT / "resnet8_torch.safetensors")
    (OUT / "resnet8_torch_logits.json").write_text(json.dumps({
        "torch": torch.__version__,
        "model": "resnet8",
        "classes": 3,
        "input": [2, 3, 32, 32],
        "logits": [round(v, 7) for v in logits.flatten().tolist()],
    }, indent=1) + "\n")
    print(f"wrote {OUT}/resnet8_torch.* (logits {logits.tolist()})")


if __name__ == "__main__":
    main()
