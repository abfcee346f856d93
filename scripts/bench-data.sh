#!/usr/bin/env bash
# Builds the yardstick data set with ../shared/bench/make-photo-imagenet: an ILSVRC2012-shaped
# folder of real photographs (Debian wallpaper packages), as the peers are measured on.
# Usage: scripts/bench-data.sh OUT [--classes 10 --per-class 100 ...]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: scripts/bench-data.sh OUT [make-photo-imagenet options]}
shift
venv=.venv/bench
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q pillow numpy
fi
if ! apt-get download --print-uris -qq mate-backgrounds >/dev/null 2>&1; then
  apt-get update -qq
fi
"$venv/bin/python" ../shared/bench/make-photo-imagenet "$out" "$@"
