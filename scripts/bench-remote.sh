#!/usr/bin/env bash
# The remote service's benchmarks (docs/BENCHMARKS.md, "Remote workers"), in one run:
#  1. Transport: `shardfeed serve --replay` (ready-made batches, no decoding) pinned to core 1,
#     `shardfeed bench --remote` pinned to core 0, 224x224 batches of 256: GB/s received into
#     batch buffers and the client's CPU-seconds per GB, over loopback.
#  2. End to end: a real worker in a network namespace of its own (a veth pair), pinned to core 1,
#     the client pinned to core 0, against the local engine decoding on core 0 alone: the ratio.
#     Skipped without root (namespaces).
# Usage: scripts/bench-remote.sh [DATASET_ROOT]   (default: the yardstick photos, made by
#        scripts/bench-data.sh into bench-data/photo and sharded into bench-data/photo-shards)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo build --release --locked --bin shardfeed
bin=$PWD/target/release/shardfeed
data=${1:-bench-data/photo-shards}
if [ ! -e "$data/train/manifest.json" ]; then
  [ -e bench-data/photo/train ] || scripts/bench-data.sh bench-data/photo
  "$bin" shard bench-data/photo --out "$data" --force >/dev/null
fi
work=$(mktemp -d)
cleanup() {
  kill $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
  ip link del sfbh0 2>/dev/null || true
  ip netns del sfbench 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
head -c 32 /dev/urandom | base64 >"$work/token"

start_worker() { # netns|- listen extra...: starts a worker in the background; sets $addr
  local prefix=()
  if [ "$1" != - ]; then prefix=(ip netns exec "$1"); fi
  local listen=$2
  shift 2
  "${prefix[@]}" taskset -c 1 "$bin" serve "$data" --listen "$listen" --workers 1 \
    --token-file "$work/token" "$@" >"$work/serve.out" 2>"$work/serve.err" &
  worker_pid=$!
  for _ in $(seq 100); do
    if grep -q "listening on" "$work/serve.out"; then break; fi
    sleep 0.1
  done
  addr=$(sed -n 's/^listening on //p' "$work/serve.out")
  [ -n "$addr" ] || { cat "$work/serve.err" >&2; exit 1; }
}
stop_worker() { kill "$worker_pid" 2>/dev/null || true; wait "$worker_pid" 2>/dev/null || true; }
rate() { sed -n 's/.*= \([0-9.]*\) img\/s.*/\1/p' <<<"$1" | head -1; }
common=(--size 224 --batch 256 --prefetch 4 --epochs 3 --warmup 1)
# The transport moves ready-made batches, so it runs through many more epochs in the time.
transport_epochs=(--size 224 --batch 256 --prefetch 4 --epochs 30 --warmup 2)

echo "== transport: serve --replay on core 1, bench --remote on core 0 (224x224, batches of 256)"
start_worker - 127.0.0.1:0 --replay
transport=$(taskset -c 0 "$bin" bench "$data" "${transport_epochs[@]}" --remote "$addr" --token-file "$work/token")
grep -E "^timed|^received|^remote" <<<"$transport"
stop_worker

echo "== local engine, one core (core 0)"
local=$(taskset -c 0 "$bin" bench "$data" "${common[@]}" --workers 1)
grep -E "^timed" <<<"$local"

if ip netns add sfbench 2>/dev/null; then
  ip link add sfbh0 type veth peer name sfbi0
  ip link set sfbi0 netns sfbench
  ip addr add 10.214.0.1/24 dev sfbh0 && ip link set sfbh0 up
  ip netns exec sfbench ip addr add 10.214.0.2/24 dev sfbi0
  ip netns exec sfbench ip link set sfbi0 up
  ip netns exec sfbench ip link set lo up
  echo "== end to end: worker in netns sfbench on core 1, client on core 0"
  start_worker sfbench 10.214.0.2:7000
  remote=$(taskset -c 0 "$bin" bench "$data" "${common[@]}" --remote "$addr" --token-file "$work/token")
  grep -E "^timed|^received" <<<"$remote"
  stop_worker
  python3 - "$(rate "$remote")" "$(rate "$local")" <<'PY'
import sys
remote, local = map(float, sys.argv[1:3])
print(f"end to end: remote worker (1 core) {remote:.0f} img/s, local engine (1 core) {local:.0f} img/s: ratio {remote / local:.3f}x")
PY
else
  echo "== end to end: skipped (network namespaces need root)"
fi
