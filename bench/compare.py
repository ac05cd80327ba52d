#!/usr/bin/env python3
"""Runs `lstmkd bench` and the PyTorch reference (bench/pytorch/bench.py) in turn on this
machine, --repeats times each, alternating so that both see the same machine state, and prints
lstmkd/PyTorch throughput ratios (mean +- std over the repeats) for the student training step,
the LSTM-KD step and deployed-student inference.

Setup (once): python3 -m venv bench/pytorch/.venv &&
              bench/pytorch/.venv/bin/pip install -r bench/pytorch/requirements.txt
Extra arguments after `--` go to both benches, so only the flags both know: --teacher,
--student, --input, --classes, --batch, --warmup, --steps, --conv-channels, --hidden (e.g.
-- --teacher resnet14 --student resnet8 --input 1x28x28 --classes 10). The reference's loss
weights (ce 1, kd 1, at 100, temporal 0.05, aux_ce 0.5) and temperature (1) are those of
`lstmkd bench`'s default config; lstmkd's --set has no counterpart there.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASES = [
    ("student_step", "(a) student training step"),
    ("distill_step", "(b) LSTM-KD distillation step"),
    ("infer_b1", "(c) deployed student inference, batch 1"),
    ("infer_batch", "(c) deployed student inference, batch B"),
]


def run(cmd, out):
    print("$", " ".join(cmd), file=sys.stderr, flush=True)
    done = subprocess.run(cmd + ["--json", out], cwd=ROOT, stdout=subprocess.DEVNULL)
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(cmd)}")
    with open(out) as f:
        return json.load(f)


def spread(xs):
    return statistics.mean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--lstmkd", default=os.path.join(ROOT, "target/release/lstmkd"), help="the lstmkd binary")
    p.add_argument("--device", default="flex", help="lstmkd's device (flex, tch, cuda:N, tch:cuda:N, vulkan:N; on a GPU PyTorch runs on CUDA)")
    p.add_argument("--python", default=os.path.join(ROOT, "bench/pytorch/.venv/bin/python"))
    p.add_argument("args", nargs="*", help="passed to both benches (after --)")
    a = p.parse_args()
    if a.repeats < 1:
        sys.exit(f"--repeats: must be at least 1, got {a.repeats}")
    for path, what in ((a.lstmkd, "cargo build --release"), (a.python, "the setup in this script's --help")):
        if not os.path.exists(path):
            sys.exit(f"{path} does not exist: run {what} first")
    # The reference runs where lstmkd runs: on a GPU device (cuda:N, tch:cuda:N, vulkan:N)
    # PyTorch uses CUDA, the only GPU runtime of its pip builds.
    torch_device = ["--device", "cuda"] if a.device.startswith(("cuda", "vulkan", "tch:cuda")) else []
    ours, theirs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.repeats):
            ours.append(run([a.lstmkd, "bench", "--device", a.device, *a.args], f"{tmp}/lstmkd-{r}.json"))
            theirs.append(run([a.python, "bench/pytorch/bench.py", *torch_device, *a.args], f"{tmp}/torch-{r}.json"))
    o = ours[0]
    print(
        f"lstmkd ({a.device}, {o['threads']} threads) vs PyTorch {theirs[0]['torch']} ({theirs[0]['threads']} threads): "
        f"{o['teacher']} -> {o['student']}, input {'x'.join(map(str, o['input']))}, {o['classes']} classes, "
        f"{a.repeats} repeats"
    )
    print(f"{'case':<42} {'lstmkd img/s':>18} {'PyTorch img/s':>18} {'ratio':>14}")
    for key, label in CASES:
        ips_o = [x[key]["img_per_s"] for x in ours]
        ips_t = [x[key]["img_per_s"] for x in theirs]
        ratio = [x / y for x, y in zip(ips_o, ips_t)]
        (mo, so), (mt, st), (mr, sr) = spread(ips_o), spread(ips_t), spread(ratio)
        label = label.replace("batch B", f"batch {ours[0][key]['batch']}")
        print(f"{label:<42} {mo:>10.1f} +- {so:<5.1f} {mt:>10.1f} +- {st:<5.1f} {mr:>6.2f} +- {sr:.2f}")
    d = [x["distill_step"]["ms_mean"] / x["student_step"]["ms_mean"] for x in ours]
    e = [x["extractor_share"] for x in ours]
    print(f"lstmkd distillation step / student step: {spread(d)[0]:.2f}x (extractors {100 * spread(e)[0]:.0f}% of the step)")


if __name__ == "__main__":
    main()
