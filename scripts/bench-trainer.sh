#!/usr/bin/env bash
# The trainer's benchmark (docs/BENCHMARKS.md, "Trainer step"): ResNet-50, synthetic batches made
# on the device, `shardfeed-train` against PyTorch eager (trainer/bench/pytorch_eager_resnet50.py:
# torchvision's resnet50, the same batch, precision, memory format, loss and LARS math) on the
# same machine in one run, alternating the two sides, and the ratio (above 1: shardfeed faster),
# with both sides' per-phase breakdown (ms/step: data zero forward loss backward allreduce lars
# sync) beside it.
#
# Usage:
#   scripts/bench-trainer.sh --cpu          per-device batch 8 16 32 64; fp32, NCHW, 64x64, CPU
#   scripts/bench-trainer.sh --gpu          per-device batch 16 32 64 128 256; bf16, channels-last,
#                                           224x224, one GPU
#   scripts/bench-trainer.sh [BATCH] [STEPS] [WARMUP]   one GPU batch (default 256 300 50)
#   scripts/bench-trainer.sh --cpu-smoke    tiny CPU run: checks that both sides work
#
# Environment: BATCHES (space-separated), ROUNDS (CPU 3, GPU 1: each round runs every batch on
# both sides, the side that goes first alternating), STEPS and WARMUP (CPU: 3 warmup steps, then
# max(10, 320/batch) timed ones; GPU: 300 and 50), SIZE, PHASES (GPU: 1 adds one short run per
# batch and side with --phases, which synchronises at every phase; on the CPU the phases are
# timed in the measured runs themselves, at no cost), THREADS (CPU intra-op threads, both sides;
# default libtorch's), OUT (where the raw lines go; default target/bench-trainer).
#
# Reported per batch: the median img/s of each side over the rounds, and the median of the
# per-round ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
source scripts/setup-torch.sh

mode=gpu
case "${1:-}" in
  --cpu) mode=cpu; shift ;;
  --gpu) mode=gpu; shift ;;
  --cpu-smoke) mode=smoke; shift ;;
  "") ;;
  -*) echo "bench-trainer: unknown option $1 (--cpu, --gpu, --cpu-smoke or [BATCH] [STEPS] [WARMUP])" >&2; exit 2 ;;
  *) BATCHES=$1; STEPS=${2:-${STEPS:-300}}; WARMUP=${3:-${WARMUP:-50}} ;;
esac

case $mode in
  cpu)
    dev=cpu; precision=fp32; format=nchw; size=${SIZE:-64}
    batches=${BATCHES:-8 16 32 64}; rounds=${ROUNDS:-3}; phases_in_run=1; phase_runs=0 ;;
  gpu)
    dev=cuda; precision=bf16; format=nhwc; size=${SIZE:-224}
    batches=${BATCHES:-16 32 64 128 256}; rounds=${ROUNDS:-1}; phases_in_run=0
    phase_runs=${PHASES:-1} ;;
  smoke)
    dev=cpu; precision=bf16; format=nhwc; size=32
    batches=4; rounds=1; STEPS=4; WARMUP=1; phases_in_run=1; phase_runs=0 ;;
esac

cargo build --release --locked -p shardfeed-trainer --bin shardfeed-train
bin=target/release/shardfeed-train
out=${OUT:-target/bench-trainer}
mkdir -p "$out"
raw="$out/raw.tsv"
: >"$raw"

threads=()
peer_threads=()
if [ -n "${THREADS:-}" ]; then
  threads=(--threads "$THREADS")
  peer_threads=(--threads "$THREADS")
fi

steps_for() {  # timed steps + warmup for a batch
  local b=$1
  if [ -n "${STEPS:-}" ]; then echo "$STEPS ${WARMUP:-50}"; return; fi
  if [ "$mode" = gpu ]; then echo "300 50"; return; fi
  local timed=$(( 320 / b )); [ "$timed" -lt 10 ] && timed=10
  echo "$(( timed + 3 )) 3"
}

# ours BATCH STEPS WARMUP [--phases]: prints "img/s<TAB>phases" from shardfeed-train.
ours() {
  local b=$1 steps=$2 warmup=$3; shift 3
  "$bin" --data synthetic --model resnet50 --classes 1000 --image-size "$size" \
    --batch-size "$b" --steps-per-epoch "$steps" --epochs 1 --eval-every 0 --checkpoint-every 0 \
    --log-every 1000000 --lr 10 --warmup-epochs 0.2 --bench-warmup "$warmup" --device "$dev" \
    --precision "$precision" --memory-format "$format" ${threads[@]+"${threads[@]}"} "$@" \
    2>"$out/ours-$b.stderr"
}

peer() {
  local b=$1 steps=$2 warmup=$3; shift 3
  python trainer/bench/pytorch_eager_resnet50.py --device "$dev" --batch-size "$b" \
    --image-size "$size" --steps "$steps" --warmup "$warmup" --precision "$precision" \
    --memory-format "$format" ${peer_threads[@]+"${peer_threads[@]}"} "$@" 2>"$out/peer-$b.stderr"
}

rate() { sed -nE 's/.*= ([0-9.]+) img\/s.*/\1/p' <<<"$1" | head -1; }
phases() { sed -nE 's/.*phases \(ms\/step\): (.*)/\1/p' <<<"$1" | head -1; }

# one SIDE ROUND BATCH STEPS WARMUP [--phases]: runs one side, appends a row to $raw.
one() {
  local side=$1 round=$2 b=$3 steps=$4 warmup=$5; shift 5
  local text
  if [ "$side" = ours ]; then text=$(ours "$b" "$steps" "$warmup" "$@"); else text=$(peer "$b" "$steps" "$warmup" "$@"); fi
  local r p
  r=$(rate "$text"); p=$(phases "$text")
  if [ -z "$r" ]; then
    echo "bench-trainer: no img/s from $side at batch $b; output:" >&2
    echo "$text" >&2
    cat "$out/$side-$b.stderr" >&2
    exit 1
  fi
  printf '%s\t%s\t%s\t%s\t%s\n' "$side" "$round" "$b" "$r" "$p" >>"$raw"
  printf '  round %s batch %3s %-5s %8.1f img/s  %s\n' "$round" "$b" "$side" "$r" "$p" >&2
}

echo "bench-trainer: $mode, batches [$batches], $rounds round(s), ${size}x${size}, $precision, $format" >&2
lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1 >&2 || true
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null >&2 || true

phase_flag=()
[ "$phases_in_run" = 1 ] && phase_flag=(--phases)
for round in $(seq 1 "$rounds"); do
  for b in $batches; do
    read -r steps warmup < <(steps_for "$b")
    if [ $(( round % 2 )) = 1 ]; then order="ours peer"; else order="peer ours"; fi
    for side in $order; do
      one "$side" "$round" "$b" "$steps" "$warmup" ${phase_flag[@]+"${phase_flag[@]}"}
    done
  done
done
if [ "$phase_runs" = 1 ]; then
  # GPU: phases from short runs of their own (they synchronise at every phase boundary).
  for b in $batches; do
    for side in ours peer; do
      text=$( if [ "$side" = ours ]; then ours "$b" 60 20 --phases; else peer "$b" 60 20 --phases; fi )
      printf '%s\tphases\t%s\t0\t%s\n' "$side" "$b" "$(phases "$text")" >>"$raw"
    done
  done
fi

python3 - "$raw" "$mode" <<'PY'
import statistics, sys
from collections import defaultdict
raw, mode = sys.argv[1], sys.argv[2]
rate = defaultdict(dict)          # (side, batch) -> {round: img/s}
ph = defaultdict(list)            # (side, batch) -> [phase dicts]
for line in open(raw):
    side, rnd, b, r, p = (line.rstrip("\n").split("\t") + [""])[:5]
    b = int(b)
    if rnd != "phases":
        rate[(side, b)][rnd] = float(r)
    if p:
        toks = p.split()
        ph[(side, b)].append({toks[i]: float(toks[i + 1]) for i in range(0, len(toks) - 1, 2)})
batches = sorted({b for _, b in rate})
names = ["data", "zero", "forward", "loss", "backward", "allreduce", "lars", "sync", "total"]
def med_phases(side, b):
    runs = ph.get((side, b), [])
    return {n: statistics.median(r.get(n, 0.0) for r in runs) for n in names} if runs else None
print()
print("| per-device batch | shardfeed-train img/s | PyTorch eager img/s | ratio (median of rounds) | rounds' ratios |")
print("| ---: | ---: | ---: | ---: | --- |")
for b in batches:
    o, p = rate[("ours", b)], rate[("peer", b)]
    ratios = [o[k] / p[k] for k in sorted(o) if k in p]
    print(f"| {b} | {statistics.median(o.values()):.1f} | {statistics.median(p.values()):.1f} | "
          f"**{statistics.median(ratios):.3f}x** | {' '.join(f'{x:.3f}' for x in ratios)} |")
print()
print("Per-phase ms/step (median over the runs; `sync` = reading the loss back, `data` = making the batch):")
print()
print("| batch | side | " + " | ".join(names) + " |")
print("| ---: | --- |" + " ---: |" * len(names))
for b in batches:
    for side, label in (("ours", "shardfeed-train"), ("peer", "PyTorch eager")):
        m = med_phases(side, b)
        if m:
            print(f"| {b} | {label} | " + " | ".join(f"{m[n]:.1f}" for n in names) + " |")
PY
