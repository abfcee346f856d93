#!/usr/bin/env bash
# The `shardfeed` Python package's tests (python/tests, pytest), run by scripts/test.sh: builds
# the extension with maturin and runs the suite twice,
#   - in .venv/python (numpy, no torch): batches come out as numpy arrays;
#   - over the torch venv of scripts/setup-torch.sh (.venv/torch), when it is there: torch
#     tensors through DLPack.
# The Rust engine's reference digests come from python/examples/engine_digest.rs, built here.
# Everything is installed from the registries (PyPI: maturin, numpy, pytest).
# Usage: scripts/test-python.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

py_venv=${PY_VENV:-$PWD/.venv/python}
if ! "$py_venv/bin/python" -c "import numpy, pytest" >/dev/null 2>&1 || [ ! -x "$py_venv/bin/maturin" ]; then
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c "import ensurepip" >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
  fi
  echo "test-python: making $py_venv (maturin, numpy, pytest from PyPI)" >&2
  python3 -m venv "$py_venv"
  "$py_venv/bin/pip" install -q --disable-pip-version-check "maturin>=1.9.4,<2" "numpy>=1.22" "pytest>=7"
fi

# The dev profile: the tests need correct bytes, not speed, and it reuses `cargo test`'s build
# (dependencies are optimised anyway: [profile.dev.package."*"]). scripts/bench-python.sh and
# `pip install ./python` build the release profile.
cargo build --locked -p shardfeed-python --example engine_digest
wheels=target/wheels-dev
rm -rf "$wheels"
(cd python && "$py_venv/bin/maturin" build --locked --profile dev --out "../$wheels")
wheel=$(ls "$wheels"/shardfeed-*.whl)
export SHARDFEED_ENGINE_DIGEST=$PWD/target/debug/examples/engine_digest

echo "== pytest (numpy, no torch): $py_venv"
"$py_venv/bin/pip" install -q --disable-pip-version-check --force-reinstall --no-deps "$wheel"
"$py_venv/bin/python" -m pytest python/tests -q "$@"

torch_venv=${TORCH_VENV:-$PWD/.venv/torch}
if [ -x "$torch_venv/bin/python" ] && "$torch_venv/bin/python" -c "import torch" >/dev/null 2>&1; then
  # A venv of our own on top of the torch venv (a .pth file puts torch's site-packages on its
  # path), so the trainer's venv is used but never changed.
  overlay=$PWD/.venv/python-torch
  [ -x "$overlay/bin/python" ] || "$torch_venv/bin/python" -m venv "$overlay"
  torch_site=$("$torch_venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
  overlay_site=$("$overlay/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
  echo "$torch_site" >"$overlay_site/torch-venv.pth"
  if ! "$overlay/bin/python" -c "import pytest" >/dev/null 2>&1; then
    "$overlay/bin/pip" install -q --disable-pip-version-check "pytest>=7"
  fi
  echo "== pytest (torch): $overlay over $torch_venv"
  "$overlay/bin/pip" install -q --disable-pip-version-check --force-reinstall --no-deps "$wheel"
  "$overlay/bin/python" -m pytest python/tests -q "$@"
else
  echo "test-python: no torch venv at $torch_venv (scripts/setup-torch.sh makes it): torch path not tested" >&2
fi
