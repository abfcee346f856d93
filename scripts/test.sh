#!/usr/bin/env bash
# Sets up everything the test suite needs on a fresh machine, then runs it: formatting, lints,
# and every test of every crate (unit, integration, end-to-end, doc tests).
# Usage: scripts/test.sh            (CI runs exactly this through .ci/run)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked
