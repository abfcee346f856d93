#!/usr/bin/env bash
# The image test scripts/test.sh runs where a Docker engine is up (it skips, saying so, where
# not): builds the shardfeed image from this checkout (docker/build-images.sh), then, as a user
# would, makes a dataset with it in a named volume and checks it from a second container that
# mounts the volume read-only. Asserts the container runs as the unprivileged uid, that the
# dataset cannot be written through the read-only mount, and leaves no container or volume behind.
#
# Usage: docker/test-images.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if ! docker info >/dev/null 2>&1; then
  echo "docker image test: SKIPPED (no Docker engine reachable: docker info failed)"
  exit 0
fi

tag=shardfeed:test
volume=shardfeed-test-$$
# `docker run --rm` returns when the container exits, and the daemon removes it a moment later:
# until then the volume is in use, so its removal is retried.
cleanup() {
  for _ in $(seq 40); do
    docker volume inspect "$volume" >/dev/null 2>&1 || return 0
    docker volume rm "$volume" >/dev/null 2>&1 && return 0
    sleep 0.25
  done
  echo "docker image test: could not remove volume $volume" >&2
}
trap cleanup EXIT
fail() { echo "docker image test: FAILED: $*" >&2; exit 1; }

started=$(date +%s)
docker/build-images.sh --tag test
run() { docker run --rm --network none "$@"; }

# The user: uid 10001, not root.
uid=$(run --entrypoint id "$tag" -u)
[ "$uid" = 10001 ] || fail "the container runs as uid $uid, expected 10001"

# Make a dataset in a named volume (it takes /work's ownership from the image).
docker volume create "$volume" >/dev/null
run -v "$volume:/work" "$tag" synth /work/images --classes 3 --per-class 4 --seed 1 >/dev/null
run -v "$volume:/work" "$tag" shard /work/images --out /work/shards >/dev/null

# Check it from a container that mounts the data read-only, as serve workers will.
out=$(run -v "$volume:/data:ro" "$tag" verify /data/shards)
echo "$out" | grep -q "OK" || fail "verify did not report OK: $out"
out=$(run -v "$volume:/data:ro" "$tag" inspect /data/shards/train)
echo "$out" | grep -q "records" || fail "inspect printed no record count: $out"
if run -v "$volume:/data:ro" --entrypoint sh "$tag" -c 'touch /data/shards/x' 2>/dev/null; then
  fail "the read-only mount accepted a write"
fi

# Nothing left behind: no container of this image is running or stopped.
left=$(docker ps -aq --filter "ancestor=$tag")
[ -z "$left" ] || fail "containers left behind: $left"

size=$(docker image inspect -f '{{.Size}}' "$tag")
echo "docker image test: passed in $(( $(date +%s) - started )) s; $tag is $(numfmt --to=si --suffix=B "$size")"
