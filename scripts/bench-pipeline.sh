#!/usr/bin/env bash
# The pipeline benchmark of docs/BENCHMARKS.md: shardfeed's loader against the peers users would
# otherwise pick (torchvision DataLoader, DALI CPU, FFCV), on the same photographs, the same
# cores, the same image count, in one run; prints a markdown table with the ratios.
#
# Usage: scripts/bench-pipeline.sh [PHOTO_DIR] [WORK_DIR]
#   PHOTO_DIR  an ILSVRC2012-shaped folder (train/nXXXXXXXX/*.JPEG), default bench-data/photo
#              (scripts/bench-data.sh builds it)
#   WORK_DIR   shards, the FFCV .beton and the results, default bench-data/pipeline
# Environment (defaults in brackets):
#   WORKERS [2]   worker threads / processes for every loader
#   CPUS [0-(WORKERS-1)]  the CPU set every run is pinned to (taskset), "" to not pin
#   BATCH [128]  SIZE [224]  EPOCHS [3] timed epochs after one warm-up epoch
#   RSS_EPOCHS [10]  epochs of the memory run (peak RSS per epoch); 0 skips it
#   PEERS [torchvision dali ffcv]  which peers to run; "" for shardfeed alone; "python" adds the
#                 Python package's loop over shardfeed.Loader (scripts/bench-python.sh installs it)
#   PEERS_DIR [~/.cache/peer-loaders]  where setup-peers installs them (run if missing)
#   SHARED_BENCH  the shared bench folder (default: the first of ../shared/bench, ../../shared/bench)
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
rss_epochs=${RSS_EPOCHS:-10}
peers=${PEERS-torchvision dali ffcv}
export PEERS_DIR=${PEERS_DIR:-$HOME/.cache/peer-loaders}
shared=${SHARED_BENCH:-}
if [ -z "$shared" ]; then
  for d in ../shared/bench ../../shared/bench; do
    if [ -d "$d/peers" ]; then shared=$(cd "$d" && pwd); break; fi
  done
fi

if [ ! -d "$photo/train" ]; then
  echo "bench-pipeline: no $photo/train; build it with scripts/bench-data.sh $photo --classes 10 --per-class 100" >&2
  exit 2
fi
mkdir -p "$work"
work=$(cd "$work" && pwd)
train=$(cd "$photo/train" && pwd)
images=$(find "$train" -type f | wc -l)

cargo build --release --locked -p shardfeed
bin=target/release/shardfeed
if [ ! -f "$work/shards/train/manifest.json" ]; then
  "$bin" shard "$photo" --out "$work/shards" --force >&2
fi

results=$work/results
mkdir -p "$results"
pin=()
if [ -n "$cpus" ] && command -v taskset >/dev/null; then pin=(taskset -c "$cpus"); fi

# measure NAME EPOCHS CMD...: runs CMD pinned, its stdout into $results/NAME-EPOCHS.out, the CPU
# time (user + system) of it and all its children into $results/NAME-EPOCHS.cpu.
measure() {
  local name=$1 n=$2
  shift 2
  python3 - "$results/$name-$n.cpu" "${pin[@]}" "$@" >"$results/$name-$n.out" <<'PY'
import resource, subprocess, sys
code = subprocess.run(sys.argv[2:]).returncode
u = resource.getrusage(resource.RUSAGE_CHILDREN)
open(sys.argv[1], "w").write(f"{u.ru_utime + u.ru_stime:.3f}\n")
sys.exit(code)
PY
}

# run_loader NAME CMD...: CMD takes the timed epoch count last. Runs it with EPOCHS and with 1
# timed epoch: the difference in CPU time over the difference in images is the CPU cost of an
# image, free of start-up (Python imports, worker start, FFCV's .beton) and of the machine's
# other load, which only stretches the wall time.
run_loader() {
  local name=$1
  shift
  echo "== $name" >&2
  measure "$name" "$epochs" "$@" "$epochs"
  measure "$name" 1 "$@" 1
}

rate_of() { # NAME: the wall-clock img/s of the EPOCHS run
  case $1 in
    shardfeed | shardfeed-zune | decode-only | decode-only-zune)
      python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["timed"]["images_per_sec"]))' \
        "$results/$1-$epochs.out" ;;
    *) grep -Eo '= [0-9.]+ img/s' "$results/$1-$epochs.out" | tail -1 | grep -Eo '[0-9]+' | head -1 ;;
  esac
}
images_of() { # NAME N: images the N-epoch run timed
  case $1 in
    shardfeed | shardfeed-zune | decode-only | decode-only-zune)
      python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["timed"]["images"])' \
        "$results/$1-$2.out" ;;
    *) grep -Eo '[0-9]+ images in' "$results/$1-$2.out" | tail -1 | grep -Eo '[0-9]+' ;;
  esac
}
per_cpu_second() { # NAME: images per CPU-second, marginal over the extra epochs
  python3 -c 'import sys
a, b = float(open(sys.argv[1]).read()), float(open(sys.argv[2]).read())
print(round((int(sys.argv[3]) - int(sys.argv[4])) / max(a - b, 1e-9)))' \
    "$results/$1-$epochs.cpu" "$results/$1-1.cpu" "$(images_of "$1" "$epochs")" "$(images_of "$1" 1)"
}

if [ "$epochs" -lt 2 ]; then
  echo "bench-pipeline: EPOCHS must be at least 2 (the CPU cost is the difference of two runs)" >&2
  exit 2
fi
bench=("$bin" bench "$work/shards/train" --workers "$workers" --batch "$batch" --size "$size"
  --json)
run_loader shardfeed "${bench[@]}" --warmup 1 --epochs
run_loader decode-only "${bench[@]}" --warmup 1 --decode-only --epochs
# The same with zune-jpeg, which decodes whole images: what the crop-aware libjpeg-turbo path
# (the default, --decoder turbo) is chosen over.
run_loader shardfeed-zune "${bench[@]}" --warmup 1 --decoder zune --epochs
run_loader decode-only-zune "${bench[@]}" --warmup 1 --decoder zune --decode-only --epochs

for p in $peers; do
  if [ "$p" = python ]; then
    # The Python package's loop over shardfeed.Loader (numpy output), as installed by
    # scripts/bench-python.sh (`pip install ./python`, release build).
    if [ ! -x .venv/bench-python/bin/python ]; then
      echo "bench-pipeline: peer python needs .venv/bench-python: run scripts/bench-python.sh first" >&2
      exit 2
    fi
    run_loader python .venv/bench-python/bin/python scripts/bench/python_loader.py \
      "$work/shards/train" --workers "$workers" --batch "$batch" --size "$size" --output numpy --epochs
    cat "$results/python-$epochs.out" >&2
    continue
  fi
  if [ ! -x "$PEERS_DIR/$p/bin/python" ]; then
    if [ -z "$shared" ]; then
      echo "bench-pipeline: peer $p is not installed and no shared/bench/setup-peers was found" >&2
      exit 2
    fi
    "$shared/setup-peers" "$p" >&2
  fi
  py=$PEERS_DIR/$p/bin/python
  case $p in
    torchvision) run_loader "$p" "$py" "$shared/peers/torchvision_train_loader.py" "$train" \
                   --workers "$workers" --batch "$batch" --epochs ;;
    dali) run_loader "$p" "$py" "$shared/peers/dali_cpu_train_loader.py" "$train" \
            --threads "$workers" --batch "$batch" --epochs ;;
    ffcv)
      # Write the .beton first, outside the measured runs.
      if [ ! -f "$work/photo-train.beton" ]; then
        "${pin[@]}" "$py" "$shared/peers/ffcv_train_loader.py" "$train" "$work/photo-train.beton" \
          --workers "$workers" --batch "$batch" --epochs 1 >&2
      fi
      run_loader "$p" "$py" "$shared/peers/ffcv_train_loader.py" "$train" \
        "$work/photo-train.beton" --workers "$workers" --batch "$batch" --epochs ;;
    *) echo "unknown peer $p" >&2; exit 2 ;;
  esac
  cat "$results/$p-$epochs.out" >&2
  if [ -z "$(rate_of "$p")" ]; then
    echo "bench-pipeline: no rate in the output of $p" >&2
    exit 1
  fi
done

ratio() { python3 -c 'import sys; print(f"{float(sys.argv[1]) / float(sys.argv[2]):.2f}x")' "$1" "$2"; }
ours=$(rate_of shardfeed)
ours_cpu=$(per_cpu_second shardfeed)
{
  echo
  echo "$images training images ($photo), ${size}x${size} uint8 RGB, $workers workers on CPUs" \
    "${cpus:-(not pinned)}, batch $batch, 1 warm-up + $epochs timed epochs; $(nproc) cores, $(uname -m)."
  echo
  echo "| loader | images timed | img/s (wall) | images per CPU-second | shardfeed is (wall) | shardfeed is (CPU) |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: |"
  echo "| **shardfeed** (libjpeg-turbo region decode, RandomResizedCrop + flip) | $(images_of shardfeed "$epochs") | $ours | $ours_cpu | 1.00x | 1.00x |"
  for p in decode-only shardfeed-zune decode-only-zune $peers; do
    label=$p
    case $p in
      decode-only) label="shardfeed --decode-only (libjpeg-turbo, full decode only)" ;;
      shardfeed-zune) label="shardfeed --decoder zune (whole-image decode, then crop)" ;;
      decode-only-zune) label="shardfeed --decoder zune --decode-only" ;;
      python) label="shardfeed.Loader, Python loop (numpy arrays)" ;;
    esac
    r=$(rate_of "$p")
    c=$(per_cpu_second "$p")
    echo "| $label | $(images_of "$p" "$epochs") | $r | $c | $(ratio "$ours" "$r") | $(ratio "$ours_cpu" "$c") |"
  done
  echo
  python3 -c 'import json,sys
t = json.load(open(sys.argv[1]))["timed"]
read, decode, augment = t["read_ms_per_image"], t["decode_ms_per_image"], t["augment_ms_per_image"]
busy, wait, secs, depth = 100 * t["busy"], t["consumer_wait_s"], t["seconds"], t["mean_queue_depth"]
print(f"shardfeed per image (worker wall time): read {read:.3f} ms, decode {decode:.3f} ms, "
      f"augment {augment:.3f} ms; workers {busy:.0f}% busy; the consumer waited {wait:.2f} s "
      f"of {secs:.2f} s; mean queue depth {depth:.1f}.")' \
    "$results/shardfeed-$epochs.out"
} | tee "$results/table.md"

if [ "$rss_epochs" -gt 0 ]; then
  echo "== shardfeed, $rss_epochs epochs: peak RSS per epoch" >&2
  measure rss "$rss_epochs" "${bench[@]}" --warmup 0 --epochs "$rss_epochs"
  python3 -c 'import json,sys
epochs = json.load(open(sys.argv[1]))["epochs"]
mib = lambda key: ", ".join(format(e[key] / 2**20, ".1f") for e in epochs)
peak, anon, mapped = mib("peak_rss_bytes"), mib("rss_anon_bytes"), mib("rss_file_bytes")
print()
print(f"Memory over {len(epochs)} epochs, MiB after each epoch: peak RSS {peak}; "
      f"anonymous (heap) RSS {anon}; file-backed (mapped shards) RSS {mapped}.")' \
    "$results/rss-$rss_epochs.out" | tee -a "$results/table.md"
fi
echo "results: $results" >&2
