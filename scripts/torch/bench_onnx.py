#!/usr/bin/env python3
"""Latency of an exported ONNX model in onnxruntime on CPU, at batch 1 and 64.

    scripts/torch/.venv/bin/python scripts/torch/bench_onnx.py --model student.onnx \
        [--input 3x32x32] [--batches 1,64] [--repeats 20] [--threads 2] [--json]

--input defaults to the model's `input` metadata (written by `lstmkd export`), else to the
graph's static input shape.
"""

import argparse
import json
import statistics
import sys
import time

import numpy as np
import onnxruntime as ort


def parse_chw(s):
    parts = [int(v) for v in s.lower().split("x")]
    if len(parts) != 3 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"--input {s!r}: expected CxHxW, e.g. 3x32x32")
    return parts


def input_shape(sess, given):
    if given:
        return given
    meta = sess.get_modelmeta().custom_metadata_map
    if "input" in meta:
        return parse_chw(meta["input"])
    dims = sess.get_inputs()[0].shape[1:]
    if len(dims) == 3 and all(isinstance(d, int) for d in dims):
        return dims
    sys.exit(f"cannot tell the input size from the model (dims {dims}); pass --input CxHxW")


def bench(sess, name, shape, batch, warmup, repeats, seed):
    # Fixed pixels in [0, 1], what lstmkd's graphs take; values do not change the cost.
    x = np.random.default_rng(seed).random((batch, *shape), dtype=np.float32)
    feed = {name: x}
    for _ in range(warmup):
        sess.run(None, feed)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sess.run(None, feed)
        times.append((time.perf_counter() - t0) * 1e3)
    mean = statistics.fmean(times)
    return {
        "batch": batch,
        "mean_ms": mean,
        "std_ms": statistics.stdev(times) if len(times) > 1 else 0.0,
        "min_ms": min(times),
        "median_ms": statistics.median(times),
        "images_per_s": batch / (mean / 1e3),
        "repeats": repeats,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--input", type=parse_chw, help="CxHxW (default: from the model)")
    ap.add_argument("--batches", default="1,64")
    ap.add_argument("--repeats", type=int, default=20, help="timed runs per batch size")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="intra-op threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    if args.repeats < 1:
        sys.exit("--repeats: at least 1")

    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    # One inter-op thread: the graphs are a chain, and extra threads only add noise.
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(args.model, so, providers=["CPUExecutionProvider"])
    shape = input_shape(sess, args.input)
    name = sess.get_inputs()[0].name
    batches = [int(b) for b in args.batches.split(",") if b.strip()]
    results = [bench(sess, name, shape, b, args.warmup, args.repeats, args.seed) for b in batches]
    report = {
        "model": args.model,
        "input": "x".join(map(str, shape)),
        "threads": args.threads,
        "onnxruntime": ort.__version__,
        "results": results,
    }
    if args.json:
        print(json.dumps(report, indent=1))
        return
    print(f"{args.model}: input {report['input']}, onnxruntime {ort.__version__}, "
          f"{args.threads} intra-op threads")
    for r in results:
        print(f"  batch {r['batch']:>3}: {r['mean_ms']:8.2f} +- {r['std_ms']:6.2f} ms "
              f"(median {r['median_ms']:.2f}, {r['repeats']} runs)  {r['images_per_s']:9.1f} img/s")


if __name__ == "__main__":
    main()
