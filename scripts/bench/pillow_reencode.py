#!/usr/bin/env python3
"""Peer for `shardfeed shard --max-side N --quality Q`: what a Python user writes to re-encode an
ImageNet folder the FFCV way. Pillow (libjpeg-turbo) decodes every JPEG under ROOT, shrinks it
with a bilinear filter so its longer side is at most N (as shardfeed's re-encoder: no JPEG draft
or DCT scaling), encodes a baseline 4:2:0 JPEG at quality Q, and appends it to one output file
per worker process. Prints `pillow-reencode: N images in T s = R img/s (P img/s/worker)`.
usage: pillow_reencode.py ROOT OUT_DIR [--workers 2] [--max-side 512] [--quality 90]"""
import argparse, io, os, time
from multiprocessing import Pool
from PIL import Image

def files(root):
    out = []
    for d, _, names in os.walk(root):
        out += [os.path.join(d, n) for n in names if not n.startswith(".")]
    return sorted(out)

def work(args):
    paths, out_path, max_side, quality = args
    n = 0
    with open(out_path, "wb") as out:
        for p in paths:
            with open(p, "rb") as f:
                im = Image.open(io.BytesIO(f.read()))
                im = im.convert("RGB")
            w, h = im.size
            if max(w, h) > max_side:
                s = max_side / max(w, h)
                size = (max_side, max(1, round(h * s))) if w >= h else (max(1, round(w * s)), max_side)
                im = im.resize(size, Image.BILINEAR)
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=quality, subsampling="4:2:0", optimize=False, progressive=False)
            out.write(buf.getbuffer())
            n += 1
        out.flush()
        os.fsync(out.fileno())
    return n

ap = argparse.ArgumentParser()
ap.add_argument("root"); ap.add_argument("out")
ap.add_argument("--workers", type=int, default=2)
ap.add_argument("--max-side", type=int, default=512)
ap.add_argument("--quality", type=int, default=90)
a = ap.parse_args()
os.makedirs(a.out, exist_ok=True)
paths = files(a.root)
chunks = [(paths[i::a.workers], os.path.join(a.out, f"part-{i}.jpgs"), a.max_side, a.quality)
          for i in range(a.workers)]
t = time.perf_counter()
with Pool(a.workers) as pool:
    n = sum(pool.map(work, chunks))
dt = time.perf_counter() - t
print(f"pillow-reencode: {n} images in {dt:.2f} s = {n/dt:.0f} img/s ({n/dt/a.workers:.0f} img/s/worker)")
