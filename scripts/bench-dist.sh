#!/usr/bin/env bash
# The multi-process benchmarks (docs/BENCHMARKS.md, "Multi-process training"), on this machine:
#
# 1. The ResNet-50 gradient all-reduce (25,557,032 fp32, averaged) over Gloo, NPROC processes
#    launched by torchrun: `shardfeed-allreduce-bench` (shardfeed-train's own c10d path) against
#    `torch.distributed.all_reduce` from Python (trainer/bench/allreduce.py) on the same buffer,
#    alternating the sides over ROUNDS rounds. Reported: each side's median ms per all-reduce and
#    the median per-round ratio (torch ms / shardfeed ms: above 1, shardfeed faster).
# 2. A training step under torchrun (NPROC processes, ResNet-50 at SIZE px, batch BATCH per
#    process, CPU, fp32): `shardfeed-train --phases` with the bucketed all-reduce overlapping
#    backward (--bucket-mb 25) and with one all-reduce after backward (--bucket-mb 0), and PyTorch
#    DDP (trainer/bench/pytorch_eager_resnet50.py under torchrun: 25 MB buckets, same model, batch
#    and LARS math), alternating over ROUNDS rounds. The "allreduce" phase is the communication
#    backward did not hide; the ratio is shardfeed img/s over DDP's.
#
# Usage: scripts/bench-dist.sh          Environment: ROUNDS (3), ITERS (20), NPROC (2),
#        SIZE (64), BATCH (8), STEPS (8 timed after 2 warmup), OUT (target/bench-dist),
#        DEVICE (cpu; cuda: the all-reduce of part 1 over NCCL, one GPU per process)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
source scripts/setup-torch.sh

ROUNDS=${ROUNDS:-3}
DEVICE=${DEVICE:-cpu}
ITERS=${ITERS:-20}
NPROC=${NPROC:-2}
SIZE=${SIZE:-64}
BATCH=${BATCH:-8}
STEPS=${STEPS:-8}
out=${OUT:-target/bench-dist}
mkdir -p "$out"
: >"$out/allreduce.txt"
: >"$out/phases.txt"

cargo build --release --locked -p shardfeed-trainer --bins
run() { torchrun --standalone --nnodes 1 --nproc-per-node "$NPROC" "$@" 2>>"$out/stderr.txt"; }

echo "== all-reduce of the ResNet-50 gradient buffer, $NPROC processes, $DEVICE ($ROUNDS rounds x $ITERS)"
for round in $(seq "$ROUNDS"); do
  if (( round % 2 )); then order="shardfeed torch"; else order="torch shardfeed"; fi
  for side in $order; do
    case $side in
      shardfeed) line=$(run --no-python target/release/shardfeed-allreduce-bench --iters "$ITERS" --device "$DEVICE") ;;
      torch) line=$(run trainer/bench/allreduce.py --iters "$ITERS" --device "$DEVICE") ;;
    esac
    echo "round $round: $line" | tee -a "$out/allreduce.txt"
  done
done

echo "== a step under torchrun: resnet50, ${SIZE}px, batch $BATCH per process, $NPROC processes, CPU"
for round in $(seq "$ROUNDS"); do
  for side in overlap no-overlap ddp; do
    case $side in
      overlap | no-overlap)
        bucket=25; [ $side = no-overlap ] && bucket=0
        line=$(run --no-python target/release/shardfeed-train --device cpu --data synthetic \
          --model resnet50 --classes 1000 --image-size "$SIZE" --batch-size "$BATCH" \
          --eval-every 0 --checkpoint-every 0 --max-steps $((STEPS + 2)) --bench-warmup 2 \
          --phases --bucket-mb "$bucket" --lr 10 | tr '\n' ' ') ;;
      ddp)
        line=$(run trainer/bench/pytorch_eager_resnet50.py --device cpu --precision fp32 \
          --memory-format nchw --image-size "$SIZE" --batch-size "$BATCH" \
          --steps $((STEPS + 2)) --warmup 2 --phases | tr '\n' ' ') ;;
    esac
    echo "round $round $side: $line" | tee -a "$out/phases.txt"
  done
done

python3 - "$out/allreduce.txt" "$out/phases.txt" <<'PY'
import re, statistics, sys
rounds = {}
for line in open(sys.argv[1]):
    m = re.match(r"round (\d+): (\S+) allreduce: .*: ([\d.]+) ms each", line)
    if m:
        rounds.setdefault(int(m[1]), {})[m[2]] = float(m[3])
sf = [r["shardfeed"] for r in rounds.values()]
pt = [r["torch.distributed"] for r in rounds.values()]
ratios = [r["torch.distributed"] / r["shardfeed"] for r in rounds.values()]
print(f"shardfeed {statistics.median(sf):.1f} ms, torch.distributed {statistics.median(pt):.1f} ms "
      f"per all-reduce (medians of {len(rounds)} rounds); ratio {statistics.median(ratios):.3f}x "
      f"(rounds: {', '.join(f'{x:.3f}' for x in ratios)})")
steps = {}
for line in open(sys.argv[2]):
    m = re.match(r"round (\d+) (\S+): .*= ([\d.]+) img/s.*phases \(ms/step\): (.*)", line)
    if m:
        phases = dict(zip(m[4].split()[::2], map(float, m[4].split()[1::2])))
        steps.setdefault(m[2], []).append((float(m[3]), phases))
print("| run | img/s (median) | backward ms | exposed allreduce ms | step total ms |")
print("| --- | ---: | ---: | ---: | ---: |")
med = lambda xs: statistics.median(xs)
for side, runs in steps.items():
    print(f"| {side} | {med([r[0] for r in runs]):.1f} | {med([r[1]['backward'] for r in runs]):.0f} | "
          f"{med([r[1]['allreduce'] for r in runs]):.0f} | {med([r[1]['total'] for r in runs]):.0f} |")
if "overlap" in steps and "no-overlap" in steps:
    comm = med([r[1]["allreduce"] for r in steps["no-overlap"]])
    exposed = med([r[1]["allreduce"] for r in steps["overlap"]])
    print(f"all-reduce after backward: {comm:.0f} ms; with buckets during backward, {exposed:.0f} ms "
          f"left after it: {100 * (1 - exposed / comm):.0f}% hidden")
if "overlap" in steps and "ddp" in steps:
    rs = [a[0] / b[0] for a, b in zip(steps["overlap"], steps["ddp"])]
    print(f"shardfeed-train / PyTorch DDP img/s: {med(rs):.3f}x (rounds: {', '.join(f'{x:.3f}' for x in rs)})")
PY
