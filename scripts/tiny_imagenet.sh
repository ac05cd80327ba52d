#!/usr/bin/env bash
# Lays out Tiny-ImageNet-200 for lstmkd's `format = "tiny-imagenet"` (the official layout:
# wnids.txt, words.txt, train/<wnid>/images/, val/images/ + val/val_annotations.txt) and checks
# it: 200 classes, 100,000 training images (500 per class), 10,000 validation images (50 per
# class).
#
#   bash scripts/tiny_imagenet.sh SOURCE [DEST]
#
# SOURCE is one of:
#   - a git repository holding `tiny-imagenet-200/` at its head, bare or not, e.g. a clone of
#     https://github.com/rangeetpan/IMagenet (`git clone --bare <url> IMagenet.git`);
#   - the official archive tiny-imagenet-200.zip (http://cs231n.stanford.edu/tiny-imagenet-200.zip);
#   - an already unpacked tiny-imagenet-200/ folder (checked, and trimmed as below, in place).
# DEST (default data/tiny-imagenet-200) must not exist yet: nothing there is overwritten.
#
# The rangeetpan/IMagenet snapshot adds two classes to the official 200 (n02480855 gorilla and
# n10148035 groom: the last two lines of its wnids.txt, 500 training images each and validation
# images val_10000 to val_10099). They are removed, so that the data is the benchmark the KD
# literature reports on.
set -euo pipefail

usage() { sed -n 2,22p "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }
[ $# -ge 1 ] && [ $# -le 2 ] || usage
case "$1" in -h|--help) usage 0 ;; esac
src=$1
dest=${2:-data/tiny-imagenet-200}
official=200

if [ ! -e "$src" ]; then
    echo "error: $src does not exist. Get Tiny-ImageNet-200 with one of:" >&2
    echo "  git clone --bare https://github.com/rangeetpan/IMagenet IMagenet.git   (then: $0 IMagenet.git)" >&2
    echo "  curl -LO http://cs231n.stanford.edu/tiny-imagenet-200.zip            (then: $0 tiny-imagenet-200.zip)" >&2
    exit 1
fi

if [ -f "$src/wnids.txt" ]; then
    dest=$src
else
    if [ -e "$dest" ]; then
        echo "error: $dest already exists; remove it or give another DEST" >&2
        exit 1
    fi
    parent=$(dirname "$dest")
    mkdir -p "$parent"
    work=$(mktemp -d "$parent/.tiny-imagenet.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    # `git -C` reads bare repositories and work trees alike.
    if [ -d "$src" ] && git -C "$src" rev-parse --verify -q HEAD:tiny-imagenet-200 >/dev/null 2>&1; then
        echo "extracting tiny-imagenet-200/ from the git repository $src"
        git -C "$src" archive HEAD tiny-imagenet-200 | tar -x -C "$work"
    elif [ -f "$src" ] && [ "${src##*.}" = zip ]; then
        echo "unpacking $src"
        python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$src" "$work"
    else
        echo "error: $src is neither a git repository with tiny-imagenet-200/ at its head, nor a .zip, nor a folder with wnids.txt" >&2
        exit 1
    fi
    if [ ! -f "$work/tiny-imagenet-200/wnids.txt" ]; then
        echo "error: $src holds no tiny-imagenet-200/wnids.txt" >&2
        exit 1
    fi
    mv "$work/tiny-imagenet-200" "$dest"
fi

python3 - "$dest" "$official" <<'EOF'
import os, shutil, sys
root, official = sys.argv[1], int(sys.argv[2])
wnids = [l.strip() for l in open(os.path.join(root, "wnids.txt")) if l.strip()]
if len(wnids) < official:
    sys.exit(f"error: {root}/wnids.txt lists {len(wnids)} classes, fewer than Tiny-ImageNet's {official}")
extra = wnids[official:]
if extra:
    print(f"removing the {len(extra)} classes beyond the official {official}: {', '.join(extra)}")
    for w in extra:
        shutil.rmtree(os.path.join(root, "train", w), ignore_errors=True)
    notes = os.path.join(root, "val", "val_annotations.txt")
    kept = []
    for line in open(notes):
        fields = line.split("\t")
        if len(fields) > 1 and fields[1] in extra:
            path = os.path.join(root, "val", "images", fields[0])
            if os.path.exists(path):
                os.remove(path)
        elif line.strip():
            kept.append(line if line.endswith("\n") else line + "\n")
    with open(notes + ".tmp", "w") as f:
        f.writelines(kept)
    os.replace(notes + ".tmp", notes)
    with open(os.path.join(root, "wnids.txt.tmp"), "w") as f:
        f.write("".join(w + "\n" for w in wnids[:official]))
    os.replace(os.path.join(root, "wnids.txt.tmp"), os.path.join(root, "wnids.txt"))
ids = set(wnids[:official])
problems = []
train = 0
for w in sorted(ids):
    d = os.path.join(root, "train", w, "images")
    n = len([f for f in os.listdir(d) if f.lower().endswith(".jpeg")]) if os.path.isdir(d) else 0
    if n != 500:
        problems.append(f"train/{w}/images holds {n} images, not 500")
    train += n
val = {}
for line in open(os.path.join(root, "val", "val_annotations.txt")):
    fields = line.split("\t")
    if len(fields) > 1:
        val[fields[1]] = val.get(fields[1], 0) + 1
        if not os.path.exists(os.path.join(root, "val", "images", fields[0])):
            problems.append(f"val/images/{fields[0]} is annotated but missing")
for w in sorted(set(val) - ids):
    problems.append(f"val_annotations.txt labels images with '{w}', not in wnids.txt")
for w in sorted(ids):
    if val.get(w, 0) != 50:
        problems.append(f"val_annotations.txt has {val.get(w, 0)} images of {w}, not 50")
if problems:
    sys.exit("error: " + root + " is not Tiny-ImageNet-200:\n  " + "\n  ".join(problems[:10]))
print(f"{root}: {len(ids)} classes, {train} training images, {sum(val.values())} validation images")
print(f'use it with: [data] format = "tiny-imagenet", root = "{root}"')
EOF
