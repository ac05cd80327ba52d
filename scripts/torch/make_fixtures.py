#!/usr/bin/env python3
"""Writes the PyTorch fixtures the Rust suite checks lstmkd against (tests/fixtures/).

resnet8_torch.safetensors: RepDistiller's CIFAR resnet8 (3 classes) with seeded random
weights and batch-norm statistics, saved by safetensors from PyTorch's own state_dict.
resnet8_torch_logits.json: PyTorch's eval-mode logits of that network for two inputs given by
a formula the test recomputes: x[n, c, h, w] = ((n * 7 + c * 5 + h * 3 + w * (n + 1)) % 17) / 8
- 1 (the second image is not a shift of the first).
zoo_torch_logits.json: for more families (RepDistiller's wrn, vgg, resnet8x4, mobilenetv2
and torchvision's resnet18/50 and mobilenet_v2), each state_dict's names, shapes and dtypes
and PyTorch's logits on that input when every tensor is filled by `formula_` below, which the
test recomputes: the weights need no file.
torchvision_<model>_keys.txt: torchvision's state_dict names, shapes and dtypes at 10 classes.
tiny_state_dict.pth: torch.save of a small state_dict inside a training container
({"model": ..., "epoch": 3}); tiny_state_dict.json: its tensors' shapes and values.

Usage: scripts/torch/.venv/bin/python scripts/torch/make_fixtures.py
"""

import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
import torchvision
from safetensors.torch import save_file

sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))
import zoo  # noqa: E402

OUT = Path(__file__).resolve().parents[2] / "tests" / "fixtures"


def main():
    model = zoo.randomize_(zoo.build("resnet8", 3), seed=11)
    x = formula_input(2, 32, 32)
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


def formula_(model):
    """Fills tensor j (state_dict order) at flat index i from u = ((i * 40503 + j * 9973 + 17)
    % 65536) / 65536 - 0.5: convolutions and linear layers u * 2 * sqrt(6 / fan_in), batch
    norm's weight u * 0.4 + 1, running_var u * 0.5 + 1, biases and running means u * 0.2 (so
    swapping weight and bias, or mean and variance, changes the logits)."""
    state = {}
    for j, (name, t) in enumerate(model.state_dict().items()):
        if name.endswith("num_batches_tracked"):
            state[name] = torch.zeros_like(t)
            continue
        i = np.arange(t.numel(), dtype=np.int64)
        u = ((i * 40503 + j * 9973 + 17) % 65536) / 65536 - 0.5
        if t.dim() > 1:
            v = u * 2 * math.sqrt(6 / (t.numel() // t.shape[0]))
        elif name.endswith("running_var"):
            v = u * 0.5 + 1
        elif name.endswith("weight"):
            v = u * 0.4 + 1
        else:
            v = u * 0.2
        state[name] = torch.from_numpy(v).float().reshape(t.shape)
    model.load_state_dict(state)
    return model


def formula_input(n, h, w):
    idx = torch.arange(n * 3 * h * w).reshape(n, 3, h, w)
    b, c = idx // (3 * h * w), (idx // (h * w)) % 3
    y, x = (idx // w) % h, idx % w
    return ((b * 7 + c * 5 + y * 3 + x * (b + 1)) % 17).float() / 8 - 1


def zoo_logits():
    families = []
    for name, side in [("resnet8x4", 32), ("wrn_16_2", 32), ("vgg8", 32),
                       ("mobilenetv2_cifar", 32), ("resnet18", 64), ("resnet50", 64),
                       ("mobilenetv2", 64)]:
        model = formula_(zoo.build(name, 3)).eval()
        with torch.no_grad():
            logits = model(formula_input(2, side, side))
        families.append({
            "model": name,
            "input": [2, 3, side, side],
            "keys": [[k, list(t.shape), str(t.dtype).removeprefix("torch.")]
                     for k, t in model.state_dict().items()],
            "logits": [round(v, 7) for v in logits.flatten().tolist()],
        })
        print(f"{name}: logits {logits.flatten().tolist()}")
    (OUT / "zoo_torch_logits.json").write_text(json.dumps({
        "torch": torch.__version__,
        "classes": 3,
        "families": families,
    }) + "\n")


def torchvision_keys():
    for name in ["resnet18", "resnet50", "mobilenet_v2"]:
        state = getattr(torchvision.models, name)(num_classes=10).state_dict()
        lines = [f"# torchvision {torchvision.__version__} {name}(num_classes=10).state_dict(): "
                 "name shape dtype"]
        for k, t in state.items():
            shape = "x".join(str(d) for d in t.shape) or "-"
            lines.append(f"{k} {shape} {str(t.dtype).removeprefix('torch.')}")
        (OUT / f"torchvision_{name}_keys.txt").write_text("\n".join(lines) + "\n")


def tiny_pth():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2), torch.nn.ReLU(), torch.nn.Linear(2, 3))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([0.5, 1.5]))
        model[1].bias.copy_(torch.tensor([-0.25, 0.75]))
        model[1].running_mean.copy_(torch.tensor([0.1, -0.2]))
        model[1].running_var.copy_(torch.tensor([2.0, 0.5]))
        model[1].num_batches_tracked.fill_(7)
    state = model.state_dict()
    torch.save({"model": state, "epoch": 3}, OUT / "tiny_state_dict.pth")
    (OUT / "tiny_state_dict.json").write_text(json.dumps({
        k: {"shape": list(t.shape), "values": t.flatten().tolist()} for k, t in state.items()
    }, indent=1) + "\n")


if __name__ == "__main__":
    main()
    zoo_logits()
    torchvision_keys()
    tiny_pth()
