"""Fixtures: a small synthetic dataset made once per session with shardfeed's own synth and
shard, the reference digests of the Rust engine (python/examples/engine_digest.rs), and RSS."""

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import shardfeed

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def shards(tmp_path_factory) -> Path:
    """`shards/train` (4 classes x 12 images, 2 shards) and `shards/val` (8 images)."""
    root = tmp_path_factory.mktemp("data")
    shardfeed.synth(root / "images", classes=4, per_class=12, val_per_class=2, seed=7)
    out = shardfeed.shard(root / "images", root / "shards", shards=2)
    assert [s["split"] for s in out] == ["train", "val"]
    return root / "shards"


@pytest.fixture(scope="session")
def train(shards) -> Path:
    return shards / "train"


def engine_digest_binary() -> Path:
    """The engine_digest example, built by scripts/test-python.sh (which exports its path)."""
    given = os.environ.get("SHARDFEED_ENGINE_DIGEST")
    if given:
        p = Path(given)
        if not p.is_file():
            pytest.fail(f"SHARDFEED_ENGINE_DIGEST={given} does not exist")
        return p
    for profile in ("debug", "release"):
        p = REPO / "target" / profile / "examples" / "engine_digest"
        if p.is_file():
            return p
    pytest.skip(
        "no engine_digest binary: build it with "
        "`cargo build -p shardfeed-python --example engine_digest` (scripts/test-python.sh does)"
    )


def engine_digests(path, **opts) -> list:
    """One dict per epoch ({epoch, batches, images, sha256}) from the Rust engine."""
    args = [str(engine_digest_binary()), str(path)]
    for k, v in opts.items():
        args += ["--" + k.replace("_", "-"), str(v)]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines()]


def to_numpy(x) -> np.ndarray:
    """A yielded array or tensor as numpy (no copy for numpy and CPU tensors)."""
    if isinstance(x, np.ndarray):
        return x
    return x.numpy()


def batch_bytes(images, labels) -> bytes:
    """What engine_digest hashes for a batch: images NHWC, then labels as u32 little-endian."""
    nhwc = to_numpy(images).transpose(0, 2, 3, 1)
    assert nhwc.flags["C_CONTIGUOUS"], "NCHW view over NHWC memory"
    return nhwc.tobytes() + to_numpy(labels).astype("<u4").tobytes()


def epoch_digest(loader) -> dict:
    h = hashlib.sha256()
    batches = images = 0
    for imgs, labels in loader:
        h.update(batch_bytes(imgs, labels))
        batches += 1
        images += len(labels)
    return {"batches": batches, "images": images, "sha256": h.hexdigest()}


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def has_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture
def copy_dataset(tmp_path, train):
    """A private copy of the train dataset, to damage."""

    def make() -> Path:
        dst = tmp_path / "copy"
        shutil.copytree(train, dst)
        return dst

    return make
