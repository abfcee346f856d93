"""The Python loop over shardfeed.Loader, timed as `shardfeed bench` times the engine: warm-up
epochs first, then the wall time of the timed epochs. The loop body does what the peers' loops
do (nothing but count), with the batch freed when the next one arrives.

Prints `shardfeed-python: N images in T s = R img/s`, the peers' format
(../shared/bench/README.md), and with --json one JSON object instead.

Usage: python_loader.py DATASET --workers 2 --batch 128 --size 224 --epochs 3
           [--warmup 1] [--prefetch 4] [--output torch|numpy] [--json]
"""

import argparse
import json
import resource
import time

import shardfeed

p = argparse.ArgumentParser()
p.add_argument("dataset")
p.add_argument("--workers", type=int, default=None)
p.add_argument("--batch", type=int, default=128)
p.add_argument("--size", type=int, default=224)
p.add_argument("--epochs", type=int, default=3)
p.add_argument("--warmup", type=int, default=1)
p.add_argument("--prefetch", type=int, default=4)
p.add_argument("--output", default="auto")
p.add_argument("--json", action="store_true")
a = p.parse_args()

loader = shardfeed.Loader(a.dataset, batch_size=a.batch, size=a.size, workers=a.workers,
                          prefetch=a.prefetch, output=a.output)
for _ in range(a.warmup):
    for images, labels in loader:
        pass
def cpu_seconds():
    u = resource.getrusage(resource.RUSAGE_SELF)  # every thread of the process
    return u.ru_utime + u.ru_stime


n = 0
m0 = loader.metrics()
c0 = cpu_seconds()
t0 = time.perf_counter()
for _ in range(a.epochs):
    for images, labels in loader:
        n += len(labels)
dt = time.perf_counter() - t0
cpu = cpu_seconds() - c0
m1 = loader.metrics()
if a.json:
    print(json.dumps({
        "output": loader.output,
        "images": n,
        "seconds": dt,
        "images_per_sec": n / dt,
        "images_per_cpu_sec": n / max(cpu, 1e-9),
        "consumer_wait_s": m1["consumer_wait_s"] - m0["consumer_wait_s"],
        "busy": (m1["worker_busy_s"] - m0["worker_busy_s"]) / (dt * loader.workers),
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }))
else:
    print(f"shardfeed-python ({loader.output}): {n} images in {dt:.2f}s = {n / dt:.0f} img/s "
          f"({n / dt / loader.workers:.0f} img/s/thread)")
