#!/usr/bin/env bash
# The trainer's benchmark (docs/BENCHMARKS.md, "Trainer"): ResNet-50, bf16 autocast, channels-last,
# synthetic on-device batches, one GPU: shardfeed-train against PyTorch eager (torchvision
# resnet50, same batch, precision and LARS math), in one run on the same GPU, and the ratio.
#
# Usage: scripts/bench-trainer.sh [BATCH] [STEPS] [WARMUP]      (default 256 300 50; needs a GPU)
#        scripts/bench-trainer.sh --cpu-smoke                   (tiny CPU run: checks both sides work)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
source scripts/setup-torch.sh

if [ "${1:-}" = "--cpu-smoke" ]; then
  dev=(--device cpu); batch=4; steps=4; warmup=1; size=32; extra=(--precision bf16 --memory-format nhwc)
else
  dev=(--device cuda); batch=${1:-256}; steps=${2:-300}; warmup=${3:-50}; size=224; extra=()
fi

cargo build --release --locked -p shardfeed-trainer --bin shardfeed-train
bin=target/release/shardfeed-train
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi (CPU)"

ours=$("$bin" --data synthetic --model resnet50 --classes 1000 --image-size "$size" \
  --batch-size "$batch" --steps-per-epoch "$steps" --epochs 1 --eval-every 0 --checkpoint-every 0 \
  --log-every 50 --lr 10 --warmup-epochs 0.2 --bench-warmup "$warmup" "${dev[@]}" "${extra[@]}" \
  | tee /dev/stderr | grep 'img/s')
peer=$(python trainer/bench/pytorch_eager_resnet50.py --batch-size "$batch" --image-size "$size" \
  --steps "$steps" --warmup "$warmup" "${dev[@]}" ${extra[@]+"${extra[@]}"} | tee /dev/stderr | grep 'img/s')

rate() { sed -E 's/.*= ([0-9.]+) img\/s.*/\1/' <<<"$1"; }
python3 - "$(rate "$ours")" "$(rate "$peer")" <<'PY'
import sys
ours, peer = map(float, sys.argv[1:3])
print(f"shardfeed-train {ours:.1f} img/s, pytorch eager {peer:.1f} img/s: ratio {ours / peer:.3f}x")
PY
