#!/usr/bin/env python3
"""A small torchvision resnet18 teacher on Fashion-MNIST, for `lstmkd import`.

Writes Fashion-MNIST's IDX files as an ImageFolder (OUT/train/<class>/<i>.png and
OUT/val/<class>/<i>.png, grey PNGs), trains torchvision's resnet18(num_classes=10) on it
at 32x32 RGB for a few epochs, and saves the state_dict plus classes.txt (ImageFolder's
class order, one per line) for `lstmkd import --class-names`.

    scripts/torch/.venv/bin/python scripts/torch/train_resnet18_fmnist.py \
        --data /tmp/fmnist --out /tmp/fmnist/teacher.pth
    target/release/lstmkd import --model resnet18 --weights /tmp/fmnist/teacher.pth \
        --input 3x32x32 --class-names /tmp/fmnist/classes.txt --out teacher.ckpt
"""

import argparse
import gzip
import struct
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from torchvision import transforms

IDX_DIR = Path("/usr/share/datasets/fashion-mnist")
# Fashion-MNIST's label order; '/' and spaces are not portable in folder names.
CLASSES = ["T-shirt_top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle_boot"]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def read_idx(path):
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise ValueError(f"{path}: {arr.size} bytes for shape {dims}")
    return arr.reshape(dims)


def write_split(images, labels, root, limit):
    """The first `limit` examples of each split, so a given limit is reproducible. Returns
    how many PNGs were written (existing ones are kept, making reruns cheap)."""
    n = len(labels) if limit is None or limit <= 0 else min(limit, len(labels))
    for name in CLASSES:
        (root / name).mkdir(parents=True, exist_ok=True)
    written = 0
    for i in range(n):
        path = root / CLASSES[labels[i]] / f"{i}.png"
        if not path.exists():
            Image.fromarray(images[i]).save(path)
            written += 1
    return n, written


def write_image_folder(idx_dir, out, limit_train, limit_val):
    for split, prefix, limit in (("train", "train", limit_train), ("val", "t10k", limit_val)):
        images = read_idx(idx_dir / f"{prefix}-images-idx3-ubyte.gz")
        labels = read_idx(idx_dir / f"{prefix}-labels-idx1-ubyte.gz")
        if len(images) != len(labels):
            raise ValueError(f"{prefix}: {len(images)} images, {len(labels)} labels")
        n, written = write_split(images, labels, out / split, limit)
        print(f"{split}: {n} images in {out / split} ({written} new)", flush=True)


def evaluate(model, loader):
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in loader:
            correct += (model(x).argmax(1) == y).sum().item()
            total += len(y)
    return correct / max(total, 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--idx-dir", type=Path, default=IDX_DIR)
    ap.add_argument("--data", type=Path, default=Path("fmnist"), help="ImageFolder root to write")
    ap.add_argument("--limit-train", type=int, default=10000, help="0 = all 60000")
    ap.add_argument("--limit-val", type=int, default=2000, help="0 = all 10000")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--write-only", action="store_true", help="write the ImageFolder and stop")
    ap.add_argument("--out", type=Path, default=Path("teacher.pth"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    write_image_folder(args.idx_dir, args.data, args.limit_train, args.limit_val)
    if args.write_only:
        return

    # Resize(32) pads nothing: it upsamples 28 -> 32. ImageFolder's default loader gives
    # RGB (grey replicated), the 3-channel input resnet18 and lstmkd's default expect.
    common = [transforms.Resize(32), transforms.ToTensor(),
              transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    train_set = torchvision.datasets.ImageFolder(
        args.data / "train", transforms.Compose([transforms.RandomHorizontalFlip()] + common))
    val_set = torchvision.datasets.ImageFolder(args.data / "val", transforms.Compose(common))
    if train_set.classes != val_set.classes:
        raise SystemExit(f"class folders differ: {train_set.classes} vs {val_set.classes}")
    train = torch.utils.data.DataLoader(train_set, args.batch_size, shuffle=True, num_workers=0)
    val = torch.utils.data.DataLoader(val_set, 256, num_workers=0)

    model = torchvision.models.resnet18(num_classes=len(train_set.classes))
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.epochs * len(train))
    for epoch in range(args.epochs):
        model.train()
        t0, seen, loss_sum = time.time(), 0, 0.0
        for x, y in train:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            seen += len(y)
            loss_sum += loss.item() * len(y)
        acc = evaluate(model, val)
        print(f"epoch {epoch + 1}/{args.epochs}: train loss {loss_sum / seen:.4f}, "
              f"val acc {acc:.4f} ({time.time() - t0:.0f}s)", flush=True)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), args.out)
    classes_txt = args.out.parent / "classes.txt"
    # ImageFolder's index order (sorted folder names), not Fashion-MNIST's label order:
    # it is what the logits' rows mean.
    classes_txt.write_text("".join(c + "\n" for c in train_set.classes))
    print(f"saved {args.out} and {classes_txt}")


if __name__ == "__main__":
    main()
