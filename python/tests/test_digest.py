"""The bytes Python sees are the Rust engine's bytes, for the same settings: one SHA-256 per
epoch over every batch (images NHWC, labels u32), from `shardfeed.Loader` here and from the
engine run in Rust with no Python in the process (python/examples/engine_digest.rs)."""

import pytest

import shardfeed
from conftest import engine_digests, epoch_digest, has_torch

CASES = [
    dict(transform="train", batch=8, size=48, seed=3, rank=0, world=1, last_batch="pad"),
    dict(transform="train", batch=5, size=40, seed=11, rank=1, world=2, last_batch="pad"),
    dict(transform="train", batch=7, size=32, seed=0, rank=0, world=3, last_batch="drop"),
    dict(transform="val", batch=3, size=56, seed=0, rank=0, world=1, last_batch="pad"),
]


def python_digests(shards, case, epochs, output, workers=2):
    split = shards / ("val" if case["transform"] == "val" else "train")
    loader = shardfeed.Loader(
        split,
        batch_size=case["batch"],
        transform=case["transform"],
        size=case["size"],
        seed=case["seed"],
        rank=case["rank"],
        world=case["world"],
        last_batch=case["last_batch"],
        workers=workers,
        output=output,
    )
    out = []
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        d = epoch_digest(loader)
        out.append(dict(epoch=epoch, **d))
    return out


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_bytes_equal_the_rust_engines(shards, case):
    split = shards / ("val" if case["transform"] == "val" else "train")
    want = engine_digests(split, epochs=2, workers=2, **case)
    assert python_digests(shards, case, 2, "numpy") == want
    if has_torch():
        assert python_digests(shards, case, 2, "torch", workers=1) == want


def test_worker_count_does_not_change_the_bytes(shards):
    case = CASES[0]
    assert python_digests(shards, case, 1, "numpy", workers=1) == python_digests(
        shards, case, 1, "numpy", workers=3
    )


def test_epochs_differ(shards):
    d = python_digests(shards, CASES[0], 2, "numpy")
    assert d[0]["sha256"] != d[1]["sha256"]
