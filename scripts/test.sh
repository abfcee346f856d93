#!/usr/bin/env bash
# Sets up everything the test suite needs on a fresh machine, then runs it: formatting, lints,
# every test of every crate (unit, integration, end-to-end, doc tests), the trainer included, the
# Python package's pytest suite (scripts/test-python.sh), and the container image built and used
# (docker/test-images.sh).
# Usage: scripts/test.sh            (CI runs exactly this through .ci/run)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
source scripts/setup-torch.sh   # libtorch for the trainer crate (a workspace member)

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked
echo "== Python package: maturin build, pytest with numpy and with torch"
scripts/test-python.sh
echo "== docker image test (skips where no Docker engine is up)"
docker/test-images.sh
