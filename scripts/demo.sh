#!/usr/bin/env bash
# The main job on an embedded default, no ImageNet needed: generate a synthetic ImageNet-shaped
# folder, shard it, inspect and verify the shards, pull one record back out, then train the small
# ResNet on the CPU with shardfeed-train, fed by the shards pipeline.
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

"$bin" synth "$work/images" --classes 10 --per-class 100 --val-per-class 20 --seed 0 --oddities
"$bin" shard "$work/images" --out "$work/shards" --shard-size 16MiB
"$bin" inspect "$work/shards"
"$bin" verify "$work/shards"
"$bin" extract "$work/shards/val" --index 0 --out "$work/val-record-0.jpg"

# Training on the CPU from those shards: the engine decodes and augments on every core
# (RandomResizedCrop + flip, 64x64), the small ResNet learns the 10 synthetic classes (chance:
# 10% top-1) in about half a minute on 2 cores; evaluation on the val shards after each epoch.
target/release/shardfeed-train --data "shards:$work/shards" --model small --image-size 64 \
  --batch-size 50 --epochs 4 --lr 2 --warmup-epochs 0.5 --eval-every 1 \
  --checkpoint-dir "$work/checkpoint" --log-file "$work/train.jsonl"
