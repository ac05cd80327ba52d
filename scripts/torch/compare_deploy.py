#!/usr/bin/env python3
"""Deployed inference: lstmkd's own (`lstmkd bench --checkpoint`) against the same checkpoint
exported to ONNX and run in onnxruntime (bench_onnx.py), at batch 1 and 64.

Each checkpoint is exported once; then the two runtimes are timed alternately `--repeats`
times and the table gives ms per batch (mean of the runs' means) and the ratio
onnxruntime time / lstmkd time as mean +- std over the runs (< 1: the ONNX graph is faster).

    scripts/torch/.venv/bin/python scripts/torch/compare_deploy.py CKPT [CKPT ...] [--repeats 3]
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def lstmkd_times(binary, ckpt, batch, steps, out):
    subprocess.run([binary, "bench", "--checkpoint", str(ckpt), "--batch", str(batch),
                    "--steps", str(steps), "--json", str(out)],
                   check=True, stdout=subprocess.DEVNULL)
    rows = json.loads(Path(out).read_text())
    return {r["batch"]: r["ms_mean"] for r in rows}


def ort_times(onnx, batch, repeats, threads):
    out = subprocess.run([sys.executable, str(HERE / "bench_onnx.py"), "--model", str(onnx),
                          "--batches", f"1,{batch}", "--repeats", str(repeats),
                          "--threads", str(threads), "--json"],
                         check=True, capture_output=True, text=True).stdout
    return {r["batch"]: r["mean_ms"] for r in json.loads(out)["results"]}


def mean_std(v):
    return statistics.mean(v), (statistics.stdev(v) if len(v) > 1 else 0.0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--lstmkd", default=str(REPO / "target/release/lstmkd"))
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3, help="alternating runs of both")
    ap.add_argument("--steps", type=int, default=20, help="timed batches per run")
    ap.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    args = ap.parse_args()
    if args.repeats < 1:
        sys.exit("--repeats: at least 1")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for ckpt in args.checkpoints:
            onnx = Path(tmp) / (Path(ckpt).parent.name + "-" + Path(ckpt).stem + ".onnx")
            subprocess.run([args.lstmkd, "export", "--checkpoint", ckpt, "--format", "onnx",
                            "--out", str(onnx), "--force"], check=True, stdout=subprocess.DEVNULL)
            ours = {1: [], args.batch: []}
            theirs = {1: [], args.batch: []}
            for _ in range(args.repeats):
                for b, ms in lstmkd_times(args.lstmkd, ckpt, args.batch, args.steps,
                                          Path(tmp) / "t.json").items():
                    ours[b].append(ms)
                for b, ms in ort_times(onnx, args.batch, args.steps, args.threads).items():
                    theirs[b].append(ms)
            for b in (1, args.batch):
                ratio = mean_std([t / o for t, o in zip(theirs[b], ours[b])])
                rows.append((ckpt, b, statistics.mean(ours[b]), statistics.mean(theirs[b]), ratio))
    print("| checkpoint | batch | lstmkd ms/batch | onnxruntime ms/batch | onnxruntime / lstmkd |")
    print("|---|---|---|---|---|")
    for ckpt, b, o, t, (m, s) in rows:
        print(f"| {ckpt} | {b} | {o:.2f} | {t:.2f} | {m:.2f} +- {s:.2f} |")


if __name__ == "__main__":
    main()
