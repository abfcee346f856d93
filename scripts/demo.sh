#!/usr/bin/env bash
# The main job on an embedded default, no ImageNet needed: generate a synthetic ImageNet-shaped
# folder, shard it, inspect and verify the shards, pull one record back out, then train the small
# ResNet on the CPU with shardfeed-train.
# Usage: scripts/demo.sh [WORK_DIR]     (default: ./demo-data; removed and rebuilt each run)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
source scripts/setup-torch.sh
work=${1:-demo-data}

cargo build --release --locked -p shardfeed -p shardfeed-trainer
bin=target/release/shardfeed
rm -rf "$work"
mkdir -p "$work"

"$bin" synth "$work/images" --classes 10 --per-class 100 --val-per-class 10 --seed 0 --oddities
"$bin" shard "$work/images" --out "$work/shards" --shard-size 16MiB
"$bin" inspect "$work/shards"
"$bin" verify "$work/shards"
"$bin" extract "$work/shards/val" --index 0 --out "$work/val-record-0.jpg"

# Training on the CPU: the small ResNet learns the synthetic classes (the shards loader is wired
# into shardfeed-train after the engine's Loader lands; until then the batches are synthetic).
target/release/shardfeed-train --data synthetic --model small --classes 10 --image-size 32 \
  --batch-size 64 --epochs 3 --steps-per-epoch 40 --lr 2 --warmup-epochs 0.5 --eval-every 1 --synthetic-noise 1.5 \
  --checkpoint-dir "$work/checkpoint" --log "$work/train.jsonl"
