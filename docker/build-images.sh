#!/usr/bin/env bash
# Builds the project's images on a machine whose Docker engine cannot reach a registry: makes the
# Debian base image (docker/bootstrap-base.sh), builds the binaries on the host (the same Debian
# release as the images, so the same glibc), stages them (and, for the trainer, the host's torch
# wheel, docker/stage-torch.py) under docker/, and builds with BINARIES=host so that BuildKit
# never needs the Rust image.
#
# Usage: docker/build-images.sh [--tag TAG] [--trainer] [--variant cpu|cuda]
#   shardfeed:TAG (default dev); with --trainer also shardfeed-trainer:TAG (--variant cpu, the
#   default) or shardfeed-trainer:TAG-cuda (--variant cuda).
# Binaries already built for this checkout may be given (the test scripts pass the ones
# `cargo test --workspace` built): SHARDFEED_IMAGE_BINARY (shardfeed),
# SHARDFEED_TRAINER_BINARY (shardfeed-train); otherwise release builds.
set -euo pipefail
cd "$(dirname "$0")/.."

tag=dev trainer=0 variant=cpu
while [ $# -gt 0 ]; do
  case $1 in
    --tag) tag=$2; shift 2 ;;
    --trainer) trainer=1; shift ;;
    --variant) variant=$2; shift 2 ;;
    *) echo "build-images: unknown argument $1 (see the script's header)" >&2; exit 2 ;;
  esac
done
case $variant in cpu|cuda) ;; *) echo "build-images: --variant is cpu or cuda" >&2; exit 2 ;; esac
source scripts/setup.sh

docker/bootstrap-base.sh debian:bookworm-slim

# BuildKit, which builds only the stages the target needs (the legacy builder would try to pull
# the Rust image of the unused source stage): the buildx plugin where it is installed, else a
# Docker client older than 23, which has BuildKit built in (Debian's docker.io).
builder=()
if docker buildx version >/dev/null 2>&1; then
  builder=(docker buildx build --load)
else
  for client in $(type -ap docker); do
    major=$("$client" version --format '{{.Client.Version}}' 2>/dev/null | cut -d. -f1)
    if [[ "$major" =~ ^[0-9]+$ ]] && [ "$major" -lt 23 ]; then
      builder=(env DOCKER_BUILDKIT=1 "$client" build)
      break
    fi
  done
fi
if [ ${#builder[@]} -eq 0 ]; then
  echo "build-images: no BuildKit: install the buildx plugin (Debian: docker-buildx)" >&2
  exit 2
fi
size() { docker image inspect -f '{{.Size}}' "$1" | numfmt --to=si --suffix=B; }
# host_binary GIVEN PACKAGE NAME: the path of the binary GIVEN (one built for this checkout), or
# of a release build of PACKAGE's binary NAME. Prints the path alone (cargo's output is stderr's).
host_binary() {
  local binary=$1
  if [ -z "$binary" ]; then
    cargo build --release --locked -p "$2" >&2
    binary=target/release/$3
  fi
  [ -x "$binary" ] || { echo "build-images: no binary at $binary" >&2; exit 2; }
  echo "$binary"
}

# ---- shardfeed: the pipeline CLI and serve ----
binary=$(host_binary "${SHARDFEED_IMAGE_BINARY:-}" shardfeed shardfeed)
# Stripped: the image carries no debug info (the line tables are for profiling on the host).
install -D -s -m 0755 "$binary" docker/bin/shardfeed
"${builder[@]}" -q -f docker/Dockerfile --build-arg BINARIES=host -t "shardfeed:$tag" . >/dev/null
echo "build-images: shardfeed:$tag, $(size "shardfeed:$tag")"

[ "$trainer" = 1 ] || exit 0

# ---- shardfeed-trainer: the trainer, torchrun and the torch wheel's libraries ----
source scripts/setup-torch.sh
trainer_binary=$(host_binary "${SHARDFEED_TRAINER_BINARY:-}" shardfeed-trainer shardfeed-train)
stage=docker/stage/trainer
rm -rf "$stage"
install -D -s -m 0755 "$trainer_binary" "$stage/bin/shardfeed-train"
# Hard links into the venv where it can (same file system): staging costs no copy.
"$TORCH_VENV/bin/python" docker/stage-torch.py --variant "$variant" --binary "$stage/bin/shardfeed-train" \
  "$("$TORCH_VENV/bin/python" -c 'import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))')" \
  "$stage/torch"
trainer_tag=shardfeed-trainer:$tag
[ "$variant" = cuda ] && trainer_tag=$trainer_tag-cuda
"${builder[@]}" -q -f docker/trainer.Dockerfile --build-arg BINARIES=host \
  --build-arg TORCH_VARIANT="$variant" -t "$trainer_tag" . >/dev/null
echo "build-images: $trainer_tag, $(size "$trainer_tag")"
