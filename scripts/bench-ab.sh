#!/usr/bin/env bash
# Same-run A/B of two shardfeed builds on the same shards and cores: runs `shardfeed bench`
# with each binary in turn, ROUNDS times, and prints each run's img/s and the median ratio.
# Used to check that a change leaves the pipeline's speed unchanged (docs/BENCHMARKS.md).
# Usage: scripts/bench-ab.sh OLD_BIN NEW_BIN SHARDS_DIR [ROUNDS]   (CPUS=0-1, WORKERS=2)
set -euo pipefail
old=${1:?usage: scripts/bench-ab.sh OLD_BIN NEW_BIN SHARDS_DIR [ROUNDS]}
new=${2:?}
shards=${3:?}
rounds=${4:-3}
cpus=${CPUS:-0-1}
workers=${WORKERS:-2}
rate() {
  taskset -c "$cpus" "$1" bench "$shards" --workers "$workers" --batch 128 --size 224 \
    --warmup 1 --epochs 3 --json |
    python3 -c 'import json,sys; print(round(json.load(sys.stdin)["timed"]["images_per_sec"]))'
}
olds=() news=()
for r in $(seq "$rounds"); do
  olds+=("$(rate "$old")")
  news+=("$(rate "$new")")
  echo "round $r: old ${olds[-1]} img/s, new ${news[-1]} img/s"
done
python3 - "${olds[*]}" "${news[*]}" <<'PY'
import statistics, sys
old = [float(x) for x in sys.argv[1].split()]
new = [float(x) for x in sys.argv[2].split()]
print(f"median: old {statistics.median(old):.0f} img/s, new {statistics.median(new):.0f} img/s, "
      f"new/old {statistics.median(new) / statistics.median(old):.3f}")
PY
