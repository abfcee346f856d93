#!/usr/bin/env bash
# Remakes augment/tests/golden/ (torchvision 0.26 + Pillow reference outputs for the augment
# crate's golden and crop-distribution tests). Run by hand when the cases change, then commit
# the result; tests and CI only read the committed files and need neither Python nor torch.
# Usage: scripts/make-golden.sh [PHOTO_DIR]   (default: bench-data/photo, built if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
photos=${1:-bench-data/photo}
[ -d "$photos/train" ] || scripts/bench-data.sh "$photos"
../shared/bench/setup-peers torchvision
python=${PEERS_DIR:-$HOME/.cache/peer-loaders}/torchvision/bin/python
"$python" augment/tests/golden/make_golden.py --photos "$photos"
