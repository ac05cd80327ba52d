"""PyTorch reference for `lstmkd bench`: the same CIFAR ResNets, extractor, losses, optimiser,
batch and step, timed the same way (wall time per step, the loss read back every step).

Prints a table and, with --json, writes the fields that bench/compare.py reads. Only the CIFAR
ResNet family of the zoo (resnet8 ... resnet110, resnet8x4, resnet32x4) is mirrored here.
"""

import argparse
import copy
import json
import os
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

NARROW = [16, 16, 32, 64]
WIDE = [32, 64, 128, 256]
CIFAR_RESNETS = {
    **{f"resnet{d}": (d, NARROW) for d in (8, 14, 20, 32, 44, 56, 110)},
    "resnet8x4": (8, WIDE),
    "resnet32x4": (32, WIDE),
}


class ConvBn(nn.Sequential):
    def __init__(self, cin, cout, kernel, stride):
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False),
            nn.BatchNorm2d(cout),
        )


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = ConvBn(cin, cout, 1, stride) if stride != 1 or cin != cout else None

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + identity)


class CifarResNet(nn.Module):
    """lstmkd's models/resnet_cifar.rs: returns logits and the three stage outputs."""

    def __init__(self, depth, widths, in_channels, classes):
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])

        def stage(cin, cout, stride):
            return nn.Sequential(
                *[BasicBlock(cin if i == 0 else cout, cout, stride if i == 0 else 1) for i in range(n)]
            )

        self.layer1 = stage(widths[0], widths[1], 1)
        self.layer2 = stage(widths[1], widths[2], 2)
        self.layer3 = stage(widths[2], widths[3], 2)
        self.fc = nn.Linear(widths[3], classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        f1 = self.layer1(x)
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        return self.fc(f3.mean((2, 3))), [f1, f2, f3]


def make_model(name, in_channels, classes):
    if name not in CIFAR_RESNETS:
        raise SystemExit(f"--teacher/--student: '{name}' is not mirrored in PyTorch; use one of {', '.join(CIFAR_RESNETS)}")
    depth, widths = CIFAR_RESNETS[name]
    return CifarResNet(depth, widths, in_channels, classes)


class Extractor(nn.Module):
    """docs/METHOD.md section 2, as lstmkd's distill/extractor.rs."""

    def __init__(self, channels, classes, window=3, conv_channels=256, hidden=512, layers=2):
        super().__init__()
        self.window = window
        self.conv = nn.Conv3d(channels, conv_channels, 3, padding=1)
        self.lstm = nn.LSTM(conv_channels, hidden, layers, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * hidden, classes)

    def forward(self, f):
        b, c, h, w = f.shape
        if h < self.window:
            f = F.pad(f, (0, 0, 0, self.window - h))
        n = f.shape[2] - self.window + 1
        s = torch.stack([f[:, :, t : t + n] for t in range(self.window)], 2)  # [B, C, T, N, W]
        y = F.relu(self.conv(s))
        x = y.mean((2, 4)).transpose(1, 2)  # [B, N, D]
        out, (hidden, cell) = self.lstm(x)
        z = out.mean(1)
        return self.head(z), hidden, cell


def at_map(f):
    return F.normalize(f.pow(2).sum(1).flatten(1), dim=1)


def temporal(hs, cs, ht, ct):
    def norm(d):
        return d.transpose(0, 1).flatten(1).norm(dim=1)

    return (norm(hs - ht) + norm(cs - ct)).mean()


WEIGHTS = {"ce": 1.0, "kd": 1.0, "at": 100.0, "temporal": 0.05, "aux_ce": 0.5}


def timed(step, warmup, steps):
    for _ in range(warmup):
        step()
    seconds = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - t0)
    return seconds


def timing(name, batch, seconds):
    ms = [s * 1e3 for s in seconds]
    mean = statistics.mean(ms)
    return {
        "name": name,
        "batch": batch,
        "ms_mean": mean,
        "ms_std": statistics.stdev(ms) if len(ms) > 1 else 0.0,
        "img_per_s": batch * 1e3 / mean,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", default="resnet32x4")
    p.add_argument("--student", default="resnet8x4")
    p.add_argument("--input", default="3x32x32", help="CxHxW")
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--conv-channels", type=int, default=256)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--json")
    a = p.parse_args()
    dev = torch.device(a.device)
    c, h, w = (int(v) for v in a.input.split("x"))
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)

    def batch(n):
        x, y = torch.randn(n, c, h, w, generator=gen), torch.randint(0, a.classes, (n,), generator=gen)
        return x.to(dev), y.to(dev)

    def sgd(params):
        return torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True)

    # (c) deployed student inference
    student = make_model(a.student, c, a.classes).to(dev).eval()
    infer = {}
    for b in (1, a.batch):
        x, _ = batch(b)

        def fwd():
            with torch.inference_mode():
                student(x)[0].sum().item()

        reps = min(max(a.steps * a.batch // b, a.steps), 200)
        infer[b] = timing(f"inference b{b}", b, timed(fwd, a.warmup, reps))

    # (a) student training step
    student = make_model(a.student, c, a.classes).to(dev).train()
    opt = sgd(student.parameters())
    data = [batch(a.batch) for _ in range(4)]
    it = iter(range(10**9))

    def student_step():
        x, y = data[next(it) % len(data)]
        loss = F.cross_entropy(student(x)[0], y)
        loss.item()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    student_t = timing("student step", a.batch, timed(student_step, a.warmup, a.steps))

    # (b) LSTM-KD step: frozen teacher and its extractors, shared-lens student extractors
    teacher = make_model(a.teacher, c, a.classes).to(dev).eval()
    student = make_model(a.student, c, a.classes).to(dev).train()
    with torch.no_grad():
        t_ch = [t.shape[1] for t in teacher(torch.zeros(1, c, h, w, device=dev))[1][-2:]]
        s_ch = [t.shape[1] for t in student.eval()(torch.zeros(1, c, h, w, device=dev))[1][-2:]]
    student.train()
    t_ext = nn.ModuleList(
        Extractor(ch, a.classes, conv_channels=a.conv_channels, hidden=a.hidden) for ch in t_ch
    ).to(dev).eval()
    adapters = nn.ModuleList(ConvBn(s, t, 1, 1) for s, t in zip(s_ch, t_ch)).to(dev)
    s_ext = copy.deepcopy(t_ext).train()
    trained = nn.ModuleList([student, adapters, s_ext])
    opt = sgd(trained.parameters())
    temperature = 1.0

    def distill_step():
        x, y = data[next(it) % len(data)]
        with torch.no_grad():
            t_logits, t_taps = teacher(x)
            t_taps = t_taps[-2:]
            t_out = [e(f) for e, f in zip(t_ext, t_taps)]
        s_logits, s_taps = student(x)
        s_taps = s_taps[-2:]
        s_out = [e(ad(f)) for e, ad, f in zip(s_ext, adapters, s_taps)]
        T = temperature
        kd = F.kl_div(F.log_softmax(s_logits / T, 1), F.log_softmax(t_logits / T, 1), reduction="batchmean", log_target=True) * T * T
        at = sum((at_map(s) - at_map(t)).pow(2).mean() for s, t in zip(s_taps, t_taps))
        tmp = sum(temporal(so[1], so[2], to[1], to[2]) for so, to in zip(s_out, t_out))
        aux = sum(F.cross_entropy(so[0], y) for so in s_out)
        loss = (
            WEIGHTS["ce"] * F.cross_entropy(s_logits, y)
            + WEIGHTS["kd"] * kd
            + WEIGHTS["at"] * at
            + WEIGHTS["temporal"] * tmp
            + WEIGHTS["aux_ce"] * aux
        )
        loss.item()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    distill_t = timing("distillation step", a.batch, timed(distill_step, a.warmup, a.steps))

    report = {
        "torch": torch.__version__,
        "device": str(dev),
        "threads": torch.get_num_threads(),
        "student_step": student_t,
        "distill_step": distill_t,
        "infer_b1": infer[1],
        "infer_batch": infer[a.batch],
    }
    print(f"PyTorch {torch.__version__} bench: {a.teacher} -> {a.student}, input {a.input}, {a.classes} classes, {torch.get_num_threads()} threads")
    for k in ("student_step", "distill_step", "infer_b1", "infer_batch"):
        t = report[k]
        print(f"{t['name']:<22} {t['batch']:>6} {t['ms_mean']:>9.2f} +- {t['ms_std']:<6.2f} {t['img_per_s']:>10.1f} img/s")
    if a.json:
        tmp = a.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump(report, f, indent=2)
        os.replace(tmp, a.json)


if __name__ == "__main__":
    main()
