#!/usr/bin/env bash
# Benchmark of `shardfeed shard` (issue 2), results in docs/BENCHMARKS.md:
#  1. pass-through sharding against `tar -cf` of the same folder to the same disk (and tar followed
#     by an fsync of the archive, since shardfeed fsyncs every shard): input page cache warmed the
#     same way before every run, output removed and the disk synced between runs, the tools
#     interleaved, REPS runs each, median;
#  2. re-encode mode (--max-side 512 --quality 90, FFCV-like) at --workers 1 and 2, in images/s
#     and images/s per core, against Pillow doing the same (scripts/bench/pillow_reencode.py)
#     with as many worker processes.
# Usage: scripts/bench-shard.sh [PHOTO_DIR]
#   PHOTO_DIR: an ILSVRC2012-shaped folder (default: bench-data/photo of the main checkout, which
#   scripts/bench-data.sh builds: scripts/bench-data.sh bench-data/photo --classes 10 --per-class 100).
# Environment: REPS (default 5), REENCODE_REPS (3), MAX_SIDE (512), QUALITY (90),
#   BENCH_OUT (scratch folder for outputs, default target/bench-shard: the repository's disk).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

main_root=$(dirname "$(git rev-parse --path-format=absolute --git-common-dir 2>/dev/null || echo "$PWD/.git")")
photo=${1:-}
if [ -z "$photo" ]; then
  if [ -d bench-data/photo ]; then photo=bench-data/photo; else photo=$main_root/bench-data/photo; fi
fi
if [ ! -d "$photo/train" ]; then
  echo "bench-shard: no ILSVRC2012-shaped folder at $photo; build one with" >&2
  echo "  scripts/bench-data.sh bench-data/photo --classes 10 --per-class 100" >&2
  exit 2
fi
photo=$(cd "$photo" && pwd)
reps=${REPS:-5}
reencode_reps=${REENCODE_REPS:-3}
max_side=${MAX_SIDE:-512}
quality=${QUALITY:-90}
out=${BENCH_OUT:-target/bench-shard}

cargo build --release --locked -p shardfeed
bin=$PWD/target/release/shardfeed
venv=.venv/bench
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import PIL' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q pillow
fi

images=$(find "$photo" -type f | wc -l)
input_bytes=$(find "$photo" -type f -printf '%s\n' | awk '{s += $1} END {print s}')
cores=$(nproc)
rm -rf "$out"
mkdir -p "$out"

warm() { find "$photo" -type f -exec cat {} + >/dev/null; }
# Runs "$@" after removing earlier outputs, warming the input and syncing the disk; prints the
# wall seconds.
timed() {
  rm -rf "$out/photo.tar" "$out/shards" "$out/pillow"
  warm
  sync
  local t0=$EPOCHREALTIME
  "$@" >/dev/null
  local t1=$EPOCHREALTIME
  echo "$t0 $t1" | awk '{printf "%.4f\n", $2 - $1}'
}
median() { sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
tar_only() { tar -cf "$out/photo.tar" -C "$(dirname "$photo")" "$(basename "$photo")"; }
tar_fsync() { tar_only; sync "$out/photo.tar"; }
shard() { "$bin" shard "$photo" --out "$out/shards" "$@"; }

echo "# bench-shard: $photo: $images files, $((input_bytes / 1000000)) MB; $cores cores; $(date -u +%F)"
echo "# $(uname -srm); $(lscpu | sed -n 's/^Model name: *//p')"
echo "# $("$bin" --version); $(tar --version | head -1); $("$venv/bin/python" -c 'import PIL, sys; print("Pillow", PIL.__version__, "Python", sys.version.split()[0])')"

declare -A runs
for r in $(seq "$reps"); do
  runs[tar]+="$(timed tar_only) "
  runs[tar_fsync]+="$(timed tar_fsync) "
  runs[shard]+="$(timed shard) "
done
rm -rf "$out/photo.tar" "$out/shards"

echo
echo "## pass-through: $reps runs each, median"
echo
echo "| tool | median s | runs (s) | MB/s | images/s | tar / tool |"
echo "| --- | --- | --- | --- | --- | --- |"
tar_median=$(echo "${runs[tar]}" | tr ' ' '\n' | grep . | median)
for tool in tar tar_fsync shard; do
  m=$(echo "${runs[$tool]}" | tr ' ' '\n' | grep . | median)
  case $tool in
    tar) name='`tar -cf`' ;;
    tar_fsync) name='`tar -cf` + fsync' ;;
    shard) name='`shardfeed shard` (pass-through)' ;;
  esac
  awk -v n="$name" -v m="$m" -v r="${runs[$tool]}" -v b="$input_bytes" -v i="$images" -v t="$tar_median" \
    'BEGIN {printf "| %s | %.3f | %s| %.0f | %.0f | %.2f |\n", n, m, r, b / m / 1e6, i / m, t / m}'
done

echo
echo "## re-encode --max-side $max_side --quality $quality: $reencode_reps runs each, median"
echo
echo "| tool | workers | median s | images/s | images/s per core | shardfeed / Pillow |"
echo "| --- | --- | --- | --- | --- | --- |"
for w in 1 2; do
  sf=() pil=()
  for r in $(seq "$reencode_reps"); do
    sf+=("$(timed shard --max-side "$max_side" --quality "$quality" --workers "$w")")
    pil+=("$(timed "$venv/bin/python" scripts/bench/pillow_reencode.py "$photo" "$out/pillow" --workers "$w" --max-side "$max_side" --quality "$quality")")
  done
  sf_m=$(printf '%s\n' "${sf[@]}" | median)
  pil_m=$(printf '%s\n' "${pil[@]}" | median)
  awk -v w="$w" -v s="$sf_m" -v p="$pil_m" -v i="$images" 'BEGIN {
    printf "| `shardfeed shard` | %d | %.3f | %.0f | %.0f | %.2f |\n", w, s, i / s, i / s / w, p / s
    printf "| Pillow (`pillow_reencode.py`) | %d | %.3f | %.0f | %.0f | |\n", w, p, i / p, i / p / w }'
done
rm -rf "$out/shards" "$out/pillow"
