#!/usr/bin/env bash
# The main job on an embedded default, no ImageNet needed: generate a synthetic ImageNet-shaped
# folder, shard it, inspect and verify the shards, and pull one record back out.
# Usage: scripts/demo.sh [WORK_DIR]     (default: ./demo-data; removed and rebuilt each run)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
work=${1:-demo-data}

cargo build --release --locked -p shardfeed
bin=target/release/shardfeed
rm -rf "$work"
mkdir -p "$work"

"$bin" synth "$work/images" --classes 10 --per-class 100 --val-per-class 10 --seed 0 --oddities
"$bin" shard "$work/images" --out "$work/shards" --shard-size 16MiB
"$bin" inspect "$work/shards"
"$bin" verify "$work/shards"
"$bin" extract "$work/shards/val" --index 0 --out "$work/val-record-0.jpg"
