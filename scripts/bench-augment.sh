#!/usr/bin/env bash
# The augment crate's per-core benchmark against its peer, in one run on the same photographs:
# criterion (augment/benches/augment.rs) for shardfeed, then Pillow + torchvision 0.26
# (augment/benches/peer_pillow.py), then a markdown table of both with the ratio.
# Usage: scripts/bench-augment.sh [PHOTO_DIR]   (default: bench-data/photo, built if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
photos=${1:-bench-data/photo}
[ -d "$photos/train" ] || scripts/bench-data.sh "$photos"
../shared/bench/setup-peers torchvision
python=${PEERS_DIR:-$HOME/.cache/peer-loaders}/torchvision/bin/python

SHARDFEED_BENCH_PHOTOS=$photos cargo bench --locked -p shardfeed-augment --bench augment
"$python" augment/benches/peer_pillow.py "$photos" --criterion target/criterion/augment
