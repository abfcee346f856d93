#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ for a while each, seeded with the committed sample
# datasets. Not part of CI (scripts/test.sh runs the property tests instead): it needs
# cargo-fuzz, libFuzzer (built from source by libfuzzer-sys with the C++ compiler), and
# nightly compiler features: a nightly toolchain when one is installed, else stable with
# RUSTC_BOOTSTRAP=1.
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]   (default: 120 s, every target)
# A crash is saved under fuzz/artifacts/TARGET/; see fuzz/README.md to reproduce and pin it.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
if ! command -v c++ >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq build-essential >/dev/null
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
if rustup run nightly rustc --version >/dev/null 2>&1; then
  fuzz=(cargo +nightly fuzz)
else
  export RUSTC_BOOTSTRAP=1
  fuzz=(cargo fuzz)
fi
seconds=${1:-120}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <("${fuzz[@]}" list)
fi

# Seeds: every committed shard, read raw (first byte 0) and with checksums repaired (1), and
# every committed manifest.
mkdir -p fuzz/corpus/shard_reader fuzz/corpus/manifest
for f in shards/tests/data/*/*.sfs; do
  name=$(echo "$f" | tr '/' '_')
  { printf '\000'; cat "$f"; } >"fuzz/corpus/shard_reader/raw_$name"
  { printf '\001'; cat "$f"; } >"fuzz/corpus/shard_reader/repaired_$name"
done
for f in shards/tests/data/*/manifest.json; do
  cp "$f" "fuzz/corpus/manifest/$(echo "$f" | tr '/' '_')"
done
# label_files: a ground truth, NUL, a synset mapping (see the target); and a Kaggle CSV.
mkdir -p fuzz/corpus/label_files
printf '490\n361\n\n171\n\0003 n01440764 tench\n1 n01443537\n2 n01484850\n' >fuzz/corpus/label_files/devkit
printf 'n01751748\nn09193705\n\000n01751748\nn09193705\n' >fuzz/corpus/label_files/synsets
printf 'ImageId,PredictionString\nILSVRC2012_val_00008726,n02119789 255 142 454 329 n02119789 44 21 322 295\n' >fuzz/corpus/label_files/kaggle
# The JPEG targets: the golden tests' JPEGs, in every layout ImageNet holds (4:2:0, 4:2:2, 4:4:4,
# progressive, restart markers, grayscale, CMYK, partial MCUs). turbo_region's inputs start with
# 5 bytes that choose the region: here the whole image, and a crop downscaled by 1/2.
mkdir -p fuzz/corpus/jpeg_walk fuzz/corpus/turbo_region
for f in augment/tests/golden/jpeg/*.jpg; do
  name=$(basename "$f" .jpg)
  cp "$f" "fuzz/corpus/jpeg_walk/$name"
  { printf '\000\000\377\377\000'; cat "$f"; } >"fuzz/corpus/turbo_region/whole_$name"
  { printf '\100\040\200\200\001'; cat "$f"; } >"fuzz/corpus/turbo_region/crop_$name"
done

for t in "${targets[@]}"; do
  echo "== fuzz $t for ${seconds}s"
  "${fuzz[@]}" run "$t" -- -max_total_time="$seconds" -print_final_stats=1
done
