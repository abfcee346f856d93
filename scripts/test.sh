#!/usr/bin/env bash
# Sets up everything the test suite needs on a fresh machine, then runs it: formatting, lints,
# every test of every crate (unit, integration, end-to-end, doc tests), the trainer included, the
# Python package's pytest suite (scripts/test-python.sh), and the container images built and used:
# the pipeline image alone (docker/test-images.sh), then the compose cluster of serve workers and
# torchrun trainers, fault-free and with faults (docker/test-cluster.sh).
# Usage: scripts/test.sh            (CI runs exactly this through .ci/run)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
source scripts/setup-torch.sh   # libtorch for the trainer crate (a workspace member)

# Each stage says when it starts, in seconds since the script did: where CI's time goes.
started=$SECONDS
stage() { echo "== [$((SECONDS - started)) s] $*"; }
stage "cargo fmt --check"
cargo fmt --all -- --check
stage "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
stage "cargo test"
cargo test --workspace --locked
stage "Python package: maturin build, pytest with numpy and with torch"
scripts/test-python.sh
# The images get the binaries `cargo test --workspace` has just built (dev profile, dependencies
# and the pixel crates optimised): building them again, in release or even as `-p shardfeed`
# alone (other feature unification), would compile the dependencies a second time, for a test of
# the images (files, libraries, user, mounts) and the cluster rather than of the optimiser.
export SHARDFEED_IMAGE_BINARY=target/debug/shardfeed
export SHARDFEED_TRAINER_BINARY=target/debug/shardfeed-train
stage "docker image test (skips where no Docker engine is up)"
docker/test-images.sh
stage "docker cluster test: 3 workers + 2 torchrun ranks, with faults (skips where no engine is up)"
docker/test-cluster.sh
stage "done"
