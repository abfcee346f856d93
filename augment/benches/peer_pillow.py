#!/usr/bin/env python3
"""The peer of the augment criterion bench: Pillow + torchvision 0.26 doing the same per-image
work on one core, on the same photographs, and the table of both.

Stages, as in augment/benches/augment.rs (each over the first 32 train JPEGs, sorted by path):
  decode_only          Image.open(...).convert("RGB")
  train_224, train_160 decode + RandomResizedCrop(size, antialias=True) + RandomHorizontalFlip
                       + PILToTensor (uint8 out, as the torchvision peer loader does)
  val_224              decode + Resize(256) + CenterCrop(224) + PILToTensor
  resize_only_*        the same transforms on images decoded beforehand

usage: peer_pillow.py PHOTO_DIR [--criterion target/criterion/augment] [--seconds 2]
With --criterion, also reads criterion's estimates for the same stages and prints a markdown
table: images/s of each, and shardfeed / Pillow. scripts/bench-augment.sh runs both.
"""

import argparse
import io
import json
import pathlib
import time

import torch
from PIL import Image
from torchvision import transforms as T

IMAGES = 32


def timed(images, work, seconds):
    """Images per second of `work` over `images`: repeated passes for about `seconds`, best
    third of the passes (the least disturbed by other processes)."""
    for image in images:  # warm-up
        work(image)
    passes = []
    started = time.perf_counter()
    while time.perf_counter() - started < seconds or len(passes) < 3:
        t = time.perf_counter()
        for image in images:
            work(image)
        passes.append(time.perf_counter() - t)
    passes.sort()
    best = passes[: max(1, len(passes) // 3)]
    return len(images) / (sum(best) / len(best))


def criterion_rate(directory, name):
    estimates = directory / name / "new" / "estimates.json"
    if not estimates.exists():
        return None
    mean_ns = json.loads(estimates.read_text())["mean"]["point_estimate"]
    return IMAGES / (mean_ns / 1e9)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("photos", type=pathlib.Path)
    parser.add_argument("--criterion", type=pathlib.Path)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    torch.set_num_threads(1)

    paths = sorted((args.photos / "train").glob("*/*.JPEG"))[:IMAGES]
    if len(paths) < IMAGES:
        raise SystemExit(f"need {IMAGES} JPEGs under {args.photos}/train")
    encoded = [p.read_bytes() for p in paths]

    def decode(data):
        return Image.open(io.BytesIO(data)).convert("RGB")

    to_tensor = T.PILToTensor()
    transforms = {
        "train_224": T.Compose(
            [T.RandomResizedCrop(224, antialias=True), T.RandomHorizontalFlip(), to_tensor]
        ),
        "train_160": T.Compose(
            [T.RandomResizedCrop(160, antialias=True), T.RandomHorizontalFlip(), to_tensor]
        ),
        "val_224": T.Compose([T.Resize(256), T.CenterCrop(224), to_tensor]),
    }
    rates = {"decode_only": timed(encoded, decode, args.seconds)}
    for name, transform in transforms.items():
        rates[name] = timed(encoded, lambda data: transform(decode(data)), args.seconds)
    decoded = [decode(data) for data in encoded]
    for name, transform in transforms.items():
        rates[f"resize_only_{name}"] = timed(decoded, transform, args.seconds)

    if args.criterion is None:
        for name, rate in rates.items():
            print(f"pillow {name}: {rate:.0f} img/s")
        return
    print("| stage (1 core) | shardfeed img/s | Pillow + torchvision img/s | ratio |")
    print("| --- | ---: | ---: | ---: |")
    for name, rate in rates.items():
        ours = criterion_rate(args.criterion, name)
        if ours is None:
            print(f"| {name} | (not run) | {rate:.0f} | |")
        else:
            print(f"| {name} | {ours:.0f} | {rate:.0f} | {ours / rate:.2f}x |")


if __name__ == "__main__":
    main()
