#!/usr/bin/env python3
"""Makes the golden data of shardfeed-augment's tests from torchvision 0.26 + Pillow, once.

The outputs are committed next to this script; the Rust tests (augment/tests/golden.rs and
augment/tests/crop_distribution.rs) read them, so neither CI nor a developer needs Python or
torch. Re-run only to change the cases, and commit what it writes:

    /work/shared/bench/setup-peers torchvision     # venv at ~/.cache/peer-loaders/torchvision
    scripts/bench-data.sh bench-data/photo         # the photographs the sources are cut from
    ~/.cache/peer-loaders/torchvision/bin/python augment/tests/golden/make_golden.py \
        --photos bench-data/photo

(`scripts/make-golden.sh` runs these three steps.)

What it writes, under augment/tests/golden/:

- sources/*.png: the inputs of the resize cases. PNG, so that Pillow and the Rust side decode
  exactly the same pixels and the comparison sees the resize alone, not two JPEG decoders.
  They are cut from photographs of the bench data set (500x375, 375x500, a small one, a 10:1
  strip, a grayscale one).
- expected/*.png: what torchvision makes of them on PIL images, as its ImageFolder pipeline
  does: `F.resized_crop(img, top, left, h, w, [size, size], BILINEAR, antialias=True)` for
  given crop boxes (then `F.hflip`), and `Resize(resize)` + `CenterCrop(size)`.
- jpeg/*.jpg and jpeg/*.png: small JPEGs written by Pillow (libjpeg-turbo) in the layouts that
  ImageNet holds (4:2:0, 4:2:2, 4:4:4, progressive, restart markers, grayscale, CMYK; odd sides,
  and even sides that leave MCU padding after the last chroma sample), and Pillow's decode of
  each (`convert("RGB")`), for the decoder's own golden check.
- cases.json: the list of cases, with the versions that made them.
- crop_distribution.json: for a few image shapes, the distribution of 20,000 crops from
  `RandomResizedCrop.get_params` (torch's generator, fixed seed), as binned histograms, for a
  two-sample Kolmogorov-Smirnov test against `plan::random_resized_crop`.
"""

import argparse
import io
import json
import math
import pathlib
import sys

import numpy as np
import PIL
import torch
import torchvision
from PIL import Image, ImageOps, features
from torchvision.transforms import InterpolationMode, RandomResizedCrop
from torchvision.transforms import functional as F
from torchvision.transforms import transforms as T

HERE = pathlib.Path(__file__).resolve().parent

# Sources: (name, photo, how to cut it). Photos are named by their path in the bench data set.
DRAGON = "train/n01464521/n01464521_57.JPEG"  # 500x375: flat colour, hard edges, fine detail
HEXES = "train/n01472440/n01472440_24.JPEG"  # 375x500: repeated sharp edges in colour
TEXTURE = "train/n01480359/n01480359_36.JPEG"  # 500x375: painted texture
LARGE = "train/n01440764/n01440764_27.JPEG"  # 1162x1408
COLOURS = "train/n01456602/n01456602_51.JPEG"  # 500x375


def box(left, top, width, height):
    return {"left": left, "top": top, "width": width, "height": height}


def make_sources(photos):
    def load(rel):
        return Image.open(photos / rel).convert("RGB")

    large = load(LARGE)
    return {
        # The two shapes that make up most of ImageNet.
        "photo-500x375": load(DRAGON),
        "photo-375x500": load(HEXES),
        # A small image: every crop is upsampled.
        "small-61x47": load(TEXTURE).resize((61, 47), Image.BILINEAR),
        # An extreme aspect ratio: RandomResizedCrop falls back to its centre crop.
        "strip-640x64": large.crop((200, 700, 840, 764)),
        # Grayscale: Pillow's mode L, made RGB by the loader as ImageFolder does.
        "gray-200x150": load(COLOURS).crop((150, 100, 350, 250)).convert("L"),
    }


def resize_cases(sources):
    """(name, source, op, parameters). Boxes are torchvision's (top, left, height, width)."""
    torch.manual_seed(20260425)
    cases = []

    def train(source, size, flip, b, tag):
        cases.append(
            {
                "name": f"{source}-train-{tag}-{size}{'-flip' if flip else ''}",
                "source": source,
                "op": "train",
                "box": b,
                "size": size,
                "flip": flip,
            }
        )

    def val(source, resize, size):
        cases.append(
            {
                "name": f"{source}-val-{resize}-{size}",
                "source": source,
                "op": "val",
                "resize": resize,
                "size": size,
            }
        )

    def drawn(source, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
        top, left, h, w = RandomResizedCrop.get_params(sources[source], scale, ratio)
        return box(left, top, w, h)

    # 500x375: a large downscale, a random crop, a tiny crop upscaled, the whole image.
    train("photo-500x375", 224, False, box(37, 20, 411, 318), "large")
    train("photo-500x375", 160, True, drawn("photo-500x375"), "random")
    train("photo-500x375", 128, True, box(300, 200, 57, 43), "upscale")
    train("photo-500x375", 96, False, box(0, 0, 500, 375), "whole")
    val("photo-500x375", 256, 224)
    val("photo-500x375", 183, 160)
    # 375x500: a crop touching the right and bottom edges, a random crop.
    train("photo-375x500", 192, False, box(175, 260, 200, 240), "corner")
    train("photo-375x500", 112, True, drawn("photo-375x500"), "random")
    val("photo-375x500", 256, 224)
    # Small: crops smaller than the output, including a one-pixel-wide column.
    train("small-61x47", 96, False, box(0, 0, 61, 47), "whole")
    train("small-61x47", 64, True, box(20, 10, 30, 25), "part")
    train("small-61x47", 32, False, box(60, 0, 1, 47), "column")
    val("small-61x47", 73, 64)
    # Strip: the fallback crop torchvision takes (centre, ratio 4/3), and val.
    top, left, h, w = RandomResizedCrop.get_params(
        sources["strip-640x64"], (0.08, 1.0), (3 / 4, 4 / 3)
    )
    train("strip-640x64", 128, False, box(left, top, w, h), "fallback")
    val("strip-640x64", 146, 128)
    # Grayscale.
    train("gray-200x150", 112, True, box(13, 7, 150, 120), "crop")
    val("gray-200x150", 128, 112)
    return cases


def torchvision_output(image, case):
    """What torchvision's ImageFolder pipeline makes: RGB PIL image in, RGB PIL image out."""
    image = image.convert("RGB")
    if case["op"] == "train":
        b = case["box"]
        out = F.resized_crop(
            image,
            b["top"],
            b["left"],
            b["height"],
            b["width"],
            [case["size"], case["size"]],
            InterpolationMode.BILINEAR,
            antialias=True,
        )
        return F.hflip(out) if case["flip"] else out
    pipeline = T.Compose([T.Resize(case["resize"]), T.CenterCrop(case["size"])])
    return pipeline(image)


def tensor_output(image, case):
    """The same on a uint8 tensor (torchvision's own antialiased kernel), for reference only."""
    t = F.pil_to_tensor(image.convert("RGB"))
    if case["op"] == "train":
        b = case["box"]
        out = F.resized_crop(
            t,
            b["top"],
            b["left"],
            b["height"],
            b["width"],
            [case["size"], case["size"]],
            InterpolationMode.BILINEAR,
            antialias=True,
        )
        out = F.hflip(out) if case["flip"] else out
    else:
        out = T.CenterCrop(case["size"])(T.Resize(case["resize"], antialias=True)(t))
    return np.asarray(F.to_pil_image(out))


def save_png(image, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, "PNG", optimize=True)


def make_jpegs(photos, out_dir):
    """Small JPEGs in ImageNet's layouts, written by Pillow, and Pillow's decode of each."""
    photo = Image.open(photos / DRAGON).convert("RGB")
    base = photo.crop((180, 60, 303, 151))  # 123x91
    # Even sides that are not multiples of the MCU (124 = 7 * 16 + 12, 92 = 5 * 16 + 12): the
    # last chroma sample then has MCU padding after it, which a decoder must not read when it
    # upsamples the last column (4:2:2, 4:2:0) and row (4:2:0). See golden.rs's edge checks.
    even = photo.crop((180, 60, 304, 152))  # 124x92
    # libjpeg pads a partial MCU by repeating the edge pixels, so its padding is close to the
    # edge and a decoder that wrongly reads it is only a little off. Other encoders pad
    # otherwise, and the padding's content is the encoder's choice: these are 128x96 images whose
    # last 4 columns and rows are the negative of the edge, encoded whole, with the frame header
    # then declaring 124x92. A valid JPEG (the padding is never displayed) on which reading the
    # padding shows at full strength.
    padded = Image.new("RGB", (128, 96))
    padded.paste(even, (0, 0))
    edge_columns = even.crop((120, 0, 124, 92)).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    padded.paste(ImageOps.invert(edge_columns), (124, 0))
    edge_rows = padded.crop((0, 88, 128, 92)).transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    padded.paste(ImageOps.invert(edge_rows), (0, 92))
    variants = [
        ("rgb-420", base, dict(quality=90, subsampling=2), None),
        ("rgb-422", base, dict(quality=90, subsampling=1), None),
        ("rgb-420-124x92", even, dict(quality=90, subsampling=2), None),
        ("rgb-422-124x92", even, dict(quality=90, subsampling=1), None),
        ("rgb-420-124x92-padding", padded, dict(quality=90, subsampling=2), (124, 92)),
        ("rgb-422-124x92-padding", padded, dict(quality=90, subsampling=1), (124, 92)),
        ("rgb-444", base, dict(quality=90, subsampling=0), None),
        ("rgb-420-progressive", base, dict(quality=90, subsampling=2, progressive=True), None),
        ("rgb-420-restart", base, dict(quality=90, subsampling=2, restart_marker_blocks=3), None),
        ("gray", base.convert("L"), dict(quality=90), None),
        ("cmyk", base.convert("CMYK"), dict(quality=90), None),
    ]
    cases = []
    for name, image, options, declared in variants:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", **options)
        data = buffer.getvalue()
        if declared is not None:
            data = declare_size(data, *declared)
        jpeg = out_dir / f"{name}.jpg"
        jpeg.parent.mkdir(parents=True, exist_ok=True)
        jpeg.write_bytes(data)
        decoded = Image.open(jpeg)
        mode = decoded.mode
        expected = out_dir / f"{name}.png"
        save_png(decoded.convert("RGB"), expected)
        cases.append(
            {
                "name": name,
                "jpeg": str(jpeg.relative_to(HERE)),
                "expected": str(expected.relative_to(HERE)),
                "pil_mode": mode,
                "options": dict(options),
                **({"encoded_size": list(image.size), "declared_size": list(declared)}
                   if declared else {}),
            }
        )
    return cases


def declare_size(jpeg, width, height):
    """The JPEG with its baseline frame header (SOF0) declaring width x height."""
    data = bytearray(jpeg)
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 7] = height.to_bytes(2, "big")
    data[sof + 7:sof + 9] = width.to_bytes(2, "big")
    return bytes(data)


# Image shapes and parameters for the RandomResizedCrop distribution test.
DISTRIBUTIONS = [
    {"name": "photo-500x375", "width": 500, "height": 375},
    {"name": "portrait-333x500", "width": 333, "height": 500},
    # Mostly the fallback: a crop of 8% or more with ratio <= 4/3 rarely fits 100 columns.
    {"name": "strip-100x1000", "width": 100, "height": 1000},
    # A narrow scale on a wide strip: fewer tries fit, the fallback is common.
    {"name": "strip-1000x100-narrow-scale", "width": 1000, "height": 100, "scale": [0.08, 0.15]},
    # Rounding dominates on a tiny image.
    {"name": "tiny-7x5", "width": 7, "height": 5},
    {
        "name": "wide-ratio-640x480",
        "width": 640,
        "height": 480,
        "scale": [0.25, 0.5],
        "ratio": [0.5, 2.0],
    },
]
SAMPLES = 20_000
BINS = 200
# log(aspect ratio) bins span ln(ratio) widened by this much on each side; values beyond land in
# the end bins (rounding on tiny images, fallbacks).
LOG_RATIO_MARGIN = 0.25


def measure_bins(width, height, ratio, crop):
    """The bins of one crop (left, top, w, h): area fraction, log aspect ratio, left, top.

    Mirrored exactly by augment/tests/crop_distribution.rs."""
    left, top, w, h = crop
    area = (w * h) / (width * height)
    area_bin = min(int(area * BINS), BINS - 1)
    lo = math.log(ratio[0]) - LOG_RATIO_MARGIN
    hi = math.log(ratio[1]) + LOG_RATIO_MARGIN
    position = (math.log(w / h) - lo) / (hi - lo)
    ratio_bin = min(max(int(math.floor(position * BINS)), 0), BINS - 1)
    return area_bin, ratio_bin, left, top


def crop_distributions():
    results = []
    for spec in DISTRIBUTIONS:
        width, height = spec["width"], spec["height"]
        scale = tuple(spec.get("scale", [0.08, 1.0]))
        ratio = tuple(spec.get("ratio", [3 / 4, 4 / 3]))
        image = Image.new("L", (width, height))
        seed = 1234
        torch.manual_seed(seed)
        # Count torch.randint calls to tell a fitted try (two calls) from the fallback (none).
        original_randint = torch.randint
        calls = [0]

        def counting_randint(*args, **kwargs):
            calls[0] += 1
            return original_randint(*args, **kwargs)

        area_hist = [0] * BINS
        ratio_hist = [0] * BINS
        left_hist = [0] * width
        top_hist = [0] * height
        fallbacks = 0
        torch.randint = counting_randint
        try:
            for _ in range(SAMPLES):
                calls[0] = 0
                top, left, h, w = RandomResizedCrop.get_params(image, scale, ratio)
                if calls[0] == 0:
                    fallbacks += 1
                a, r, l, t = measure_bins(width, height, ratio, (left, top, w, h))
                area_hist[a] += 1
                ratio_hist[r] += 1
                left_hist[l] += 1
                top_hist[t] += 1
        finally:
            torch.randint = original_randint
        results.append(
            {
                "name": spec["name"],
                "width": width,
                "height": height,
                "scale": list(scale),
                "ratio": list(ratio),
                "samples": SAMPLES,
                "torch_seed": seed,
                "fallbacks": fallbacks,
                "area_fraction_hist": area_hist,
                "log_ratio_hist": ratio_hist,
                "left_hist": left_hist,
                "top_hist": top_hist,
            }
        )
        print(f"{spec['name']}: fallback rate {fallbacks / SAMPLES:.3f}")
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=pathlib.Path, default=pathlib.Path("bench-data/photo"))
    args = parser.parse_args()
    if torchvision.__version__.split("+")[0] != "0.26.0":
        print(f"warning: made for torchvision 0.26.0, found {torchvision.__version__}", file=sys.stderr)

    sources = make_sources(args.photos)
    for name, image in sources.items():
        save_png(image, HERE / "sources" / f"{name}.png")

    cases = resize_cases(sources)
    for case in cases:
        source = sources[case["source"]]
        expected = torchvision_output(source, case)
        path = HERE / "expected" / f"{case['name']}.png"
        save_png(expected, path)
        case["source"] = f"sources/{case['source']}.png"
        case["expected"] = str(path.relative_to(HERE))
        # How far torchvision's own tensor kernel is from its PIL one, for context.
        diff = np.abs(tensor_output(source, case).astype(int) - np.asarray(expected).astype(int))
        case["torchvision_tensor_vs_pil"] = {
            "max_abs_diff": int(diff.max()),
            "share_off_by_more_than_1": float((diff > 1).mean()),
        }
        print(f"{case['name']}: tensor vs PIL max {diff.max()}, >1 {(diff > 1).mean():.4f}")

    jpeg_cases = make_jpegs(args.photos, HERE / "jpeg")
    manifest = {
        "made_by": "augment/tests/golden/make_golden.py",
        "versions": {
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "pillow": PIL.__version__,
            "libjpeg_turbo": features.version("jpg"),
        },
        "resize_cases": cases,
        "jpeg_cases": jpeg_cases,
    }
    (HERE / "cases.json").write_text(json.dumps(manifest, indent=1) + "\n")

    distributions = {
        "made_by": "augment/tests/golden/make_golden.py",
        "versions": manifest["versions"],
        "bins": BINS,
        "log_ratio_margin": LOG_RATIO_MARGIN,
        "cases": crop_distributions(),
    }
    (HERE / "crop_distribution.json").write_text(json.dumps(distributions) + "\n")


if __name__ == "__main__":
    main()
