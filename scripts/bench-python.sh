#!/usr/bin/env bash
# The Python package against the engine it wraps: the Python loop over shardfeed.Loader
# (scripts/bench/python_loader.py; numpy arrays, and torch tensors through DLPack) against
# `shardfeed bench`, on the same shards, the same pinned cores, the same settings, in one run,
# alternating the loaders for ROUNDS rounds so that the machine's other load falls on all of
# them alike. Prints markdown tables: img/s of wall time, and images per CPU-second of the
# whole process (which the machine's other load does not dilute); medians, ratio to the bench.
# The peers (torchvision, DALI, FFCV) on the same photographs: scripts/bench-pipeline.sh with
# PEERS="python torchvision dali ffcv" puts this loader into its table.
#
# Usage: scripts/bench-python.sh [PHOTO_DIR] [WORK_DIR]
#   PHOTO_DIR  ILSVRC2012-shaped photographs, default bench-data/photo (scripts/bench-data.sh)
#   WORK_DIR   shards and results, default bench-data/pipeline (shared with bench-pipeline.sh)
# Environment: WORKERS [2]  CPUS [0-(WORKERS-1)]  BATCH [128]  SIZE [224]  EPOCHS [3] timed
#   epochs after 1 warm-up  ROUNDS [3]  PREFETCH [4]  OUTPUTS [numpy torch]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

photo=${1:-bench-data/photo}
work=${2:-bench-data/pipeline}
workers=${WORKERS:-2}
cpus=${CPUS-0-$((workers - 1))}
batch=${BATCH:-128}
size=${SIZE:-224}
epochs=${EPOCHS:-3}
rounds=${ROUNDS:-3}
prefetch=${PREFETCH:-4}
outputs=${OUTPUTS-numpy torch}

cargo build --release --locked -p shardfeed
bin=target/release/shardfeed
mkdir -p "$work"
work=$(cd "$work" && pwd)
if [ ! -f "$work/shards/train/manifest.json" ]; then
  if [ ! -d "$photo/train" ]; then
    echo "bench-python: no $photo/train; build it with scripts/bench-data.sh $photo --classes 10 --per-class 100" >&2
    exit 2
  fi
  "$bin" shard "$photo" --out "$work/shards" --force >&2
fi
train=$work/shards/train

# The package as a user installs it: `pip install ./python` (maturin from PyPI, release build),
# through a wheel so the numpy venv and the torch venv get the same build.
venv=.venv/bench-python
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "numpy>=1.22"
fi
rm -rf target/wheels-release
"$venv/bin/pip" wheel -q --disable-pip-version-check --no-deps ./python -w target/wheels-release
wheel=$(ls target/wheels-release/shardfeed-*.whl)
"$venv/bin/pip" install -q --disable-pip-version-check --force-reinstall --no-deps "$wheel"
pythons=()
for o in $outputs; do
  case $o in
    numpy) pythons+=("numpy:$venv/bin/python") ;;
    torch)
      torch_venv=${TORCH_VENV:-$PWD/.venv/torch}
      if ! "$torch_venv/bin/python" -c "import torch" >/dev/null 2>&1; then
        echo "bench-python: no torch at $torch_venv (scripts/setup-torch.sh); skipping output=torch" >&2
        continue
      fi
      # Our own venv over the torch venv (a .pth file), as scripts/test-python.sh does.
      overlay=.venv/bench-python-torch
      [ -x "$overlay/bin/python" ] || "$torch_venv/bin/python" -m venv "$overlay"
      torch_site=$("$torch_venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
      overlay_site=$("$overlay/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
      echo "$torch_site" >"$overlay_site/torch-venv.pth"
      "$overlay/bin/pip" install -q --disable-pip-version-check --force-reinstall --no-deps "$wheel"
      pythons+=("torch:$overlay/bin/python") ;;
    *) echo "bench-python: unknown output $o" >&2; exit 2 ;;
  esac
done

pin=()
if [ -n "$cpus" ] && command -v taskset >/dev/null; then pin=(taskset -c "$cpus"); fi
results=$work/results-python
mkdir -p "$results"
rm -f "$results"/*.json
for r in $(seq 1 "$rounds"); do
  echo "== round $r: shardfeed bench" >&2
  "${pin[@]}" "$bin" bench "$train" --workers "$workers" --batch "$batch" --size "$size" \
    --prefetch "$prefetch" --warmup 1 --epochs "$epochs" --json >"$results/bench-$r.json"
  for entry in "${pythons[@]}"; do
    name=${entry%%:*}
    py=${entry#*:}
    echo "== round $r: python ($name)" >&2
    "${pin[@]}" "$py" scripts/bench/python_loader.py "$train" --workers "$workers" \
      --batch "$batch" --size "$size" --prefetch "$prefetch" --warmup 1 --epochs "$epochs" \
      --output "$name" --json >"$results/python-$name-$r.json"
  done
done

python3 - "$results" "$rounds" "$(find "$photo/train" -type f 2>/dev/null | wc -l)" \
  "$workers" "${cpus:-(not pinned)}" "$batch" "$size" "$epochs" "$prefetch" "${pythons[@]}" <<'PY' | tee "$results/table.md"
import json, statistics, sys
results, rounds, images, workers, cpus, batch, size, epochs, prefetch = sys.argv[1:10]
pythons = [p.split(":", 1)[0] for p in sys.argv[10:]]
rounds = int(rounds)
def rate(path, bench, key="images_per_sec"):
    d = json.load(open(path))
    return d["timed"][key] if bench else d[key]
def rows(key):
    out = [("`shardfeed bench` (Rust, the engine alone)",
            [rate(f"{results}/bench-{r}.json", True, key) for r in range(1, rounds + 1)])]
    for p in pythons:
        label = {"numpy": "Python loop, `shardfeed.Loader(..., output=\"numpy\")`",
                 "torch": "Python loop, `shardfeed.Loader(...)` → torch tensors (DLPack)"}[p]
        out.append((label, [rate(f"{results}/python-{p}-{r}.json", False, key)
                            for r in range(1, rounds + 1)]))
    return out
print()
print(f"{images} training images, {size}x{size} train transform, {workers} workers on CPUs {cpus}, "
      f"batch {batch}, prefetch {prefetch}, 1 warm-up + {epochs} timed epochs, {rounds} rounds "
      f"alternating the loaders.")
for key, what in (("images_per_sec", "img/s (wall)"),
                  ("images_per_cpu_sec", "images per CPU-second (the whole process)")):
    rs = rows(key)
    base = statistics.median(rs[0][1])
    print()
    print(f"| loader | {what}, per round | median | vs `shardfeed bench` |")
    print("| --- | --- | ---: | ---: |")
    for label, xs in rs:
        m = statistics.median(xs)
        print(f"| {label} | {', '.join(f'{x:.0f}' for x in xs)} | {m:.0f} | {m / base:.3f}x |")
PY
echo "results: $results" >&2
