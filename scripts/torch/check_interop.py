#!/usr/bin/env python3
"""lstmkd <-> PyTorch interop check, one zoo family per row.

For each family: random PyTorch weights (batch-norm statistics included) -> state_dict file
-> `lstmkd import` -> `lstmkd predict --json` logits vs PyTorch's on the same pixels ->
`lstmkd export --format onnx` run in onnxruntime -> `lstmkd export --format safetensors`
loaded back with load_state_dict(strict=True).

Usage (from the repository root, after `cargo build --release`):
    scripts/torch/.venv/bin/python scripts/torch/check_interop.py [--families resnet8,vgg8]
        [--lstmkd target/release/lstmkd] [--out results.md] [--keep DIR]
Exit status 1 if any row fails.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

# No __pycache__ beside the sources: the repository does not ignore it.
sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))
import zoo  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DEFAULT_FAMILIES = (
    "resnet8", "resnet20", "resnet56", "resnet110", "resnet8x4", "resnet32x4",
    "wrn_16_2", "wrn_40_2", "vgg8", "vgg11", "vgg13", "mobilenetv2_cifar", "mobilenetv2_cifar@0.5",
    "resnet18", "resnet34", "resnet50", "mobilenetv2",
)
# Every container `lstmkd import` claims to unwrap is exercised by some family; the rest
# use a plain torch.save(state_dict) .pth.
LAYOUTS = {
    "resnet32x4": "safetensors",
    "resnet18": "safetensors",
    "wrn_16_2": "repdistiller",
    "resnet8x4": "nested:model",
    "mobilenetv2": "nested:model",
    "vgg13": "nested:state_dict",
    "vgg8": "module.",
    "resnet50": "module.",
    "wrn_40_2": "nested:model+module.",
}


class Failure(Exception):
    pass


def run(cmd, timeout):
    """Runs an lstmkd command; a failure carries its exact stderr to the table's notes."""
    t0 = time.time()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise Failure(f"`{' '.join(map(str, cmd[1:3]))}` timed out after {timeout}s")
    if p.returncode != 0:
        err = (p.stderr.strip() or p.stdout.strip())[-3000:]
        raise Failure(f"`{' '.join(map(str, cmd))}` exited {p.returncode}:\n{err}")
    return p.stdout, time.time() - t0


def repdistiller_container(sd):
    """What RepDistiller's train_teacher.py saves: the weights under "model" beside the
    epoch, a best accuracy tensor and the optimizer's state (momentum buffers are tensors
    too, keyed by integers), which an unwrapping reader must step over."""
    params = [v.clone().float() for k, v in sd.items() if v.is_floating_point()][:3]
    params = [torch.nn.Parameter(p) for p in params]
    opt = torch.optim.SGD(params, lr=0.05, momentum=0.9)
    sum((p * p).sum() for p in params).backward()
    opt.step()
    return {"epoch": 240, "model": sd, "best_acc": torch.tensor(73.5),
            "optimizer": opt.state_dict()}


def save_weights(sd, layout, path_stem):
    if layout == "safetensors":
        from safetensors.torch import save_file
        path = path_stem.with_suffix(".safetensors")
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
        return path
    if layout == "repdistiller":
        obj = repdistiller_container(sd)
    else:
        obj = sd
        if "module." in layout:
            obj = {f"module.{k}": v for k, v in obj.items()}
        if layout.startswith("nested:"):
            obj = {layout.split(":", 1)[1].split("+")[0]: obj}
    path = path_stem.with_suffix(".pth")
    torch.save(obj, path)
    return path


def write_images(dirpath, size, n_random, rng):
    """Random RGB PNGs (every pixel value, no spatial structure) plus a smooth one."""
    files = []
    for i in range(n_random):
        arr = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
        files.append(arr)
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    files.append((np.stack([xx, yy, 1 - xx * yy], -1) * 255).round().astype(np.uint8))
    paths = []
    for i, arr in enumerate(files):
        p = dirpath / f"img{i}.png"
        Image.fromarray(arr).save(p)
        paths.append(p)
    return paths


def center_crop(arr, h, w):
    # torchvision's CenterCrop offsets round((H - h) / 2); the PNGs make it an integer.
    top, left = (arr.shape[0] - h) // 2, (arr.shape[1] - w) // 2
    return arr[top:top + h, left:left + w]


def pixels(paths, h, w):
    """The [0, 1] NCHW batch lstmkd should see: decoded PNG, /255, centre crop."""
    xs = []
    for p in paths:
        arr = np.asarray(Image.open(p).convert("RGB"), dtype=np.uint8)
        xs.append(center_crop(arr, h, w).astype(np.float32) / 255.0)
    return np.ascontiguousarray(np.stack(xs).transpose(0, 3, 1, 2))


def torch_logits(model, x01, mean, std):
    x = torch.from_numpy(x01)
    x = (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)
    with torch.no_grad():
        return model(x).numpy()


def parse_floats(s):
    s = s.strip()
    if s.startswith("["):
        return [float(v) for v in json.loads(s)]
    return [float(v) for v in s.replace(",", " ").split()]


def check_predict(lstmkd, ckpt, paths, ref, class_names, timeout):
    out, secs = run([lstmkd, "predict", "--checkpoint", ckpt, *map(str, paths),
                     "--top", "3", "--json"], timeout)
    try:
        rows = json.loads(out)
    except json.JSONDecodeError as e:
        raise Failure(f"predict --json: not JSON ({e}); stdout starts {out[:300]!r}")
    by_name = {Path(r["file"]).name: r for r in rows}
    notes, diff = [], 0.0
    for i, p in enumerate(paths):
        r = by_name.get(p.name)
        if r is None:
            raise Failure(f"predict --json: no entry for {p.name}; files: {list(by_name)}")
        logits = np.asarray(r["logits"], dtype=np.float64)
        if logits.shape != ref[i].shape:
            raise Failure(f"predict --json: {len(logits)} logits for {p.name}, expected {ref.shape[1]}")
        diff = max(diff, float(np.abs(logits - ref[i]).max()))
        # The top list must agree with the logits it prints beside it.
        prob = np.exp(logits - logits.max())
        prob /= prob.sum()
        top = r.get("top", [])
        want = np.argsort(-logits)[:len(top)]
        if [t["index"] for t in top] != list(want):
            notes.append(f"predict top indices {[t['index'] for t in top]} != argsort {list(want)}")
        for t in top:
            if t.get("class") != class_names[t["index"]]:
                notes.append(f"predict class {t.get('class')!r} for index {t['index']}, expected {class_names[t['index']]!r}")
            if abs(t["prob"] - prob[t["index"]]) > 1e-4:
                notes.append(f"predict prob {t['prob']:.6f} != softmax {prob[t['index']]:.6f}")
    return diff, sorted(set(notes)), secs


def check_resize(lstmkd, ckpt, model, fam_dir, imagenet, h, w, mean, std, seed, timeout):
    """Informational: a non-square image through lstmkd's resize against torchvision's
    evaluation transform on PIL (bilinear, antialiased). Resamplers differ in rounding and
    filter support, so this measures closeness rather than asserting equality. Returns
    max|diff| / max(1, max|logit|)."""
    from torchvision import transforms
    rng = np.random.default_rng(seed + 1)
    big = (round(h / 0.875) + 37, round(h / 0.875) + 90) if imagenet else (45, 61)
    # Smooth content (low-pass noise) as photographs are; per-pixel noise would measure
    # aliasing of the resamplers instead.
    small = rng.integers(0, 256, size=(big[0] // 8 + 1, big[1] // 8 + 1, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize((big[1], big[0]), Image.BICUBIC)
    path = fam_dir / "resize.png"
    img.save(path)
    if imagenet:
        tf = transforms.Compose([transforms.Resize(round(h / 0.875)), transforms.CenterCrop(h)])
    else:
        tf = transforms.Resize((h, w))
    x01 = (np.asarray(tf(Image.open(path).convert("RGB")), dtype=np.float32) / 255.0)
    ref = torch_logits(model, np.ascontiguousarray(x01.transpose(2, 0, 1)[None]), mean, std)[0]
    out, _ = run([lstmkd, "predict", "--checkpoint", ckpt, str(path), "--json"], timeout)
    got = np.asarray(json.loads(out)[0]["logits"])
    return float(np.abs(got - ref).max()) / max(1.0, float(np.abs(ref).max()))


def check_onnx(lstmkd, ckpt, out_path, x01, ref, name, input_chw, mean, std, class_names, timeout):
    import onnx
    import onnxruntime as ort
    _, secs = run([lstmkd, "export", "--checkpoint", ckpt, "--format", "onnx",
                   "--out", out_path, "--force"], timeout)
    notes = []
    model = onnx.load(str(out_path))
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as e:  # noqa: BLE001 - any checker complaint fails the row
        raise Failure(f"onnx.checker: {e}")
    opsets = {o.domain: o.version for o in model.opset_import}
    if opsets.get("", opsets.get("ai.onnx")) != 17:
        notes.append(f"opset_import {opsets}, expected 17")
    ins = [i.name for i in model.graph.input]
    outs = [o.name for o in model.graph.output]
    if ins != ["input"] or outs != ["logits"]:
        raise Failure(f"ONNX graph inputs {ins}, outputs {outs}; expected ['input'], ['logits']")
    d0 = model.graph.input[0].type.tensor_type.shape.dim[0]
    if not d0.dim_param or d0.HasField("dim_value"):
        notes.append("ONNX input batch dimension is not symbolic")
    meta = {p.key: p.value for p in model.metadata_props}
    want_input = "x".join(map(str, input_chw))
    if meta.get("model") != name:
        notes.append(f"metadata model={meta.get('model')!r}")
    if meta.get("input") != want_input:
        notes.append(f"metadata input={meta.get('input')!r}, expected {want_input}")
    try:
        if json.loads(meta.get("classes", "null")) != class_names:
            notes.append(f"metadata classes={meta.get('classes')!r}")
        for key, want in (("mean", mean), ("std", std)):
            got = parse_floats(meta.get(key, ""))
            if len(got) != len(want) or max(abs(a - b) for a, b in zip(got, want)) > 1e-6:
                notes.append(f"metadata {key}={meta.get(key)!r}")
    except (ValueError, TypeError) as e:
        notes.append(f"metadata unparsable: {e}")
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(str(out_path), so, providers=["CPUExecutionProvider"])
    got = sess.run(["logits"], {"input": x01})[0]
    one = sess.run(["logits"], {"input": x01[:1]})[0]  # dynamic batch: N=1 as well as N=4
    if got.shape != ref.shape or one.shape != (1, ref.shape[1]):
        raise Failure(f"onnxruntime logits shape {got.shape}/{one.shape}, expected {ref.shape}")
    diff = max(float(np.abs(got - ref).max()), float(np.abs(one - ref[:1]).max()))
    return diff, notes, secs


def check_safetensors(lstmkd, ckpt, out_path, original_sd, name, classes, width, x01, ref, mean,
                      std, timeout):
    from safetensors.torch import load_file
    _, secs = run([lstmkd, "export", "--checkpoint", ckpt, "--format", "safetensors",
                   "--out", out_path, "--force"], timeout)
    sd = load_file(str(out_path))
    fresh = zoo.build(name, classes, width)
    try:
        fresh.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise Failure(f"load_state_dict(strict=True): {str(e)[:2000]}")
    notes = []
    # Weights must come back bit-for-bit (export writes the unfolded network).
    worst_key, worst = None, 0.0
    counters = set()
    for k, v in original_sd.items():
        w = sd[k]
        if w.dtype != v.dtype:
            notes.append(f"{k}: dtype {w.dtype}, PyTorch has {v.dtype}")
            continue
        if k.endswith("num_batches_tracked"):
            # Only BN with momentum=None reads the counter; reported, never a failure.
            if int(w) != int(v):
                counters.add(int(w))
            continue
        d = float((w.double() - v.double()).abs().max()) if v.numel() else 0.0
        if d > worst:
            worst_key, worst = k, d
    if worst > 0:
        notes.append(f"safetensors tensors differ from the original (worst {worst_key}: {worst:.3g})")
    if counters:
        notes.append(f"safetensors num_batches_tracked written as {sorted(counters)} "
                     "rather than the imported counts")
    got = torch_logits(fresh.eval(), x01, mean, std)
    return float(np.abs(got - ref).max()), notes, secs


def check_family(family, args, work, lstmkd, has_predict, seed):
    # "mobilenetv2@0.5": a width multiplier, passed to both PyTorch and `import --width`.
    name, _, width = family.partition("@")
    width = float(width) if width else None
    row = {"family": family, "layout": LAYOUTS.get(name, "pth"), "import": "-", "onnx": "-",
           "safetensors": "-", "pass": False, "notes": []}
    fam_dir = work / family
    fam_dir.mkdir(parents=True, exist_ok=True)
    K = args.classes
    imagenet = name in zoo.IMAGENET_FAMILIES
    (c, h, w), mean, std, _ = zoo.defaults(name)
    if imagenet:
        h = w = args.imagenet_size
    # torchvision's eval transform resizes the shorter side to round(H / 0.875) before the
    # crop; writing PNGs at that size makes lstmkd's resize the identity, so the pixels
    # compared are exactly the PNG's centre.
    png = round(h / 0.875) if imagenet else h
    class_names = [f"class {k}" for k in range(K)]
    names_file = fam_dir / "classes.txt"
    names_file.write_text("".join(n + "\n" for n in class_names))

    torch.manual_seed(seed)
    model = zoo.randomize_(zoo.build(name, K, width or 1.0), seed)
    sd = model.state_dict()
    weights = save_weights(sd, row["layout"], fam_dir / "weights")
    paths = write_images(fam_dir, png, args.images, np.random.default_rng(seed))
    x01 = pixels(paths, h, w)
    ref = torch_logits(model, x01, mean, std).astype(np.float64)
    tol = 1e-4 * max(1.0, float(np.abs(ref).max()))
    row["tol"] = tol
    ckpt = fam_dir / "model.ckpt"
    cmd = [lstmkd, "import", "--model", name, "--weights", weights,
           "--class-names", names_file, "--out", ckpt, "--force"]
    # The containers also exercise the defaults: classes from the classifier's rows, and
    # (at 224) the ImageNet input size.
    if row["layout"] == "pth":
        cmd += ["--classes", str(K)]
    if imagenet and h != 224:
        cmd += ["--input", f"{c}x{h}x{w}"]
    if width is not None:
        cmd += ["--width", str(width)]
    ok = True
    try:
        _, secs = run(cmd, args.timeout)
        row["secs"] = {"import": secs}
    except Failure as e:
        row["import"] = "import failed"
        row["notes"].append(str(e))
        return row

    def step(key, fn):
        nonlocal ok
        try:
            diff, notes, secs = fn()
            row[key] = diff
            row["secs"][key] = secs
            row["notes"].extend(notes)
            if diff > tol:
                ok = False
        except Failure as e:
            row[key] = "failed"
            row["notes"].append(str(e))
            ok = False
        except Exception as e:  # noqa: BLE001 - a crash in one check must not stop the table
            row[key] = "error"
            row["notes"].append(f"{type(e).__name__}: {e}")
            ok = False

    if has_predict:
        step("import", lambda: check_predict(lstmkd, ckpt, paths, ref, class_names, args.timeout))
    else:
        row["import"] = "no predict"
        ok = False
    if has_predict and args.resize_check:
        try:
            row["resize"] = check_resize(lstmkd, ckpt, model, fam_dir, imagenet, h, w, mean,
                                         std, seed, args.timeout)
        except Exception as e:  # noqa: BLE001 - informational only
            row["resize"] = "error"
            row["notes"].append(f"resize check: {e}")
    step("onnx", lambda: check_onnx(lstmkd, ckpt, fam_dir / "model.onnx", x01, ref, name,
                                    (c, h, w), mean, std, class_names, args.timeout))
    step("safetensors", lambda: check_safetensors(
        lstmkd, ckpt, fam_dir / "export.safetensors", sd, name, K, width or 1.0, x01, ref,
        mean, std, args.timeout))
    # Metadata or top-k disagreements are reported, but only numerical ones fail a row:
    # they are what a deployment would silently get wrong.
    row["pass"] = ok
    return row


def fmt(v):
    if isinstance(v, float):
        return f"{v:.2e}"
    return str(v)


def table(rows):
    lines = ["| family | layout | import max abs diff | ONNX (onnxruntime) max abs diff | "
             "safetensors strict load (logit diff) | tol | pass | resized image rel. diff (info) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        st = r["safetensors"]
        st = f"ok ({st:.2e})" if isinstance(st, float) else st
        tol = f"{r['tol']:.1e}" if "tol" in r else "-"
        lines.append(f"| {r['family']} | {r['layout']} | {fmt(r['import'])} | {fmt(r['onnx'])} "
                     f"| {st} | {tol} | {'yes' if r['pass'] else '**no**'} | {fmt(r.get('resize', '-'))} |")
    # A note most rows share (e.g. an export convention) is printed once with its families.
    by_note = {}
    for r in rows:
        for n in r["notes"]:
            by_note.setdefault(n, []).append(r["family"])
    if by_note:
        lines += ["", "Notes:", ""]
        for n, fams in by_note.items():
            who = "all families" if len(fams) == len(rows) > 1 else ", ".join(fams)
            n = n.replace("\n", "\n    ")
            lines.append(f"- {who}: {n}")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lstmkd", default=str(REPO / "target/release/lstmkd"))
    ap.add_argument("--families", default=",".join(DEFAULT_FAMILIES),
                    help="comma-separated; name@W sets a MobileNetV2 width multiplier; known: "
                    + ",".join(zoo.ALL_FAMILIES))
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--images", type=int, default=3, help="random PNGs (plus one smooth)")
    ap.add_argument("--imagenet-size", type=int, default=96,
                    help="H=W for the ImageNet families (224 is their default but slow on CPU)")
    ap.add_argument("--timeout", type=int, default=900, help="seconds per lstmkd command")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-resize-check", dest="resize_check", action="store_false",
                    help="skip the informational non-square resize comparison")
    ap.add_argument("--out", help="also write the table (markdown) here")
    ap.add_argument("--json", help="also write the rows as JSON here")
    ap.add_argument("--keep", help="work in this directory and keep it (default: a temp dir)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    lstmkd = str(Path(args.lstmkd).resolve())
    if not os.access(lstmkd, os.X_OK):
        sys.exit(f"{lstmkd}: not an executable; build with `cargo build --release` or pass --lstmkd")
    help_text = subprocess.run([lstmkd, "--help"], capture_output=True, text=True).stdout
    has_predict = any(l.strip().startswith("predict") for l in help_text.splitlines())
    if not has_predict:
        print("warning: this lstmkd has no `predict`; import is checked through export only",
              file=sys.stderr)
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    unknown = [f for f in families if f.partition("@")[0] not in zoo.ALL_FAMILIES]
    if unknown:
        sys.exit(f"unknown families {unknown}; known: {', '.join(zoo.ALL_FAMILIES)}")

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="lstmkd-interop-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for i, name in enumerate(families):
            t0 = time.time()
            row = check_family(name, args, work, lstmkd, has_predict, seed=1000 + i)
            rows.append(row)
            print(f"{name}: {'pass' if row['pass'] else 'FAIL'} ({time.time() - t0:.1f}s)",
                  file=sys.stderr, flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    text = table(rows)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1, default=str))
    sys.exit(0 if rows and all(r["pass"] for r in rows) else 1)


if __name__ == "__main__":
    main()
