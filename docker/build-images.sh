#!/usr/bin/env bash
# Builds the project's images on a machine whose Docker engine cannot reach a registry: makes the
# Debian base image (docker/bootstrap-base.sh), builds the binaries on the host (the same Debian
# release as the image, so the same glibc) into docker/bin/, and builds the image with
# BINARIES=host so that BuildKit never needs the Rust image.
#
# Usage: docker/build-images.sh [TAG]     (default shardfeed:dev)
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:-shardfeed:dev}
source scripts/setup.sh

docker/bootstrap-base.sh debian:bookworm-slim
# SHARDFEED_IMAGE_BINARY: a shardfeed binary already built for this checkout (the test script
# passes the one its `cargo test --workspace` built); otherwise a release build.
binary=${SHARDFEED_IMAGE_BINARY:-}
if [ -z "$binary" ]; then
  cargo build --release --locked -p shardfeed
  binary=target/release/shardfeed
fi
[ -x "$binary" ] || { echo "build-images: no binary at $binary" >&2; exit 2; }
# Stripped: the image carries no debug info (the line tables are for profiling on the host).
install -D -s -m 0755 "$binary" docker/bin/shardfeed

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
"${builder[@]}" -q -f docker/Dockerfile --build-arg BINARIES=host -t "$tag" . >/dev/null
echo "build-images: $tag, $(docker image inspect -f '{{.Size}}' "$tag" | numfmt --to=si --suffix=B)"
