"""Buffers: memory stays flat across epochs, a batch held past the next ones keeps its bytes
(the tensor owns the engine's buffer until it is freed), and holding every buffer is an error
that says what to do, not a hang."""

import gc
import hashlib

import numpy as np
import pytest

import shardfeed
from conftest import batch_bytes, has_torch, rss_bytes, to_numpy


def test_rss_is_flat_over_20_epochs(train):
    loader = shardfeed.Loader(train, batch_size=8, size=64, workers=2)
    for _ in range(3):
        for images, labels in loader:
            pass
    gc.collect()
    before = rss_bytes()
    for _ in range(17):
        for images, labels in loader:
            images = to_numpy(images).sum()  # touch it, then let it go
    del images, labels
    gc.collect()
    grown = rss_bytes() - before
    assert loader.epoch == 20
    assert grown < 4 << 20, f"RSS grew by {grown / 2**20:.1f} MiB over 17 epochs"


@pytest.mark.parametrize("output", ["numpy", "torch"])
def test_a_batch_held_past_the_next_ones_keeps_its_bytes(train, output):
    if output == "torch" and not has_torch():
        pytest.skip("torch is not installed")
    loader = shardfeed.Loader(train, batch_size=4, size=48, workers=2, prefetch=4, output=output)
    held = []  # the last two batches, with a copy of their bytes at the time they came
    checked = 0
    for epoch in range(3):
        for images, labels in loader:
            held.append((images, labels, batch_bytes(images, labels)))
            if len(held) > 2:
                old = held.pop(0)
                assert batch_bytes(old[0], old[1]) == old[2]
                checked += 1
    assert checked == 3 * len(loader) - 2
    # The tensors outlive the loader: the buffers are theirs until they are freed.
    loader.close()
    del loader
    gc.collect()
    for images, labels, want in held:
        assert batch_bytes(images, labels) == want


def test_the_array_keeps_the_batch_after_the_exporter_is_gone(train):
    loader = shardfeed.Loader(train, batch_size=4, size=32, output="dlpack")
    images, labels = next(iter(loader))
    a = np.from_dlpack(images)
    b = np.asarray(images)
    want = hashlib.sha256(a.tobytes()).hexdigest()
    assert a.shape == (4, 3, 32, 32) and a.strides == (32 * 32 * 3, 1, 32 * 3, 3)
    assert not b.flags.writeable, "numpy's view is read-only: it is the engine's buffer"
    del images
    for _ in loader:  # the other buffers cycle; this one stays with `a` and `b`
        pass
    gc.collect()
    assert hashlib.sha256(a.tobytes()).hexdigest() == want
    assert hashlib.sha256(b.tobytes()).hexdigest() == want


def test_holding_every_buffer_is_a_clear_error(train):
    loader = shardfeed.Loader(train, batch_size=2, size=32, workers=1, prefetch=3, output="numpy")
    held = []
    with pytest.raises(shardfeed.BuffersHeldError, match="raise prefetch"):
        for batch in loader:
            held.append(batch)
    assert len(held) == 3
    assert isinstance(shardfeed.BuffersHeldError("x"), shardfeed.BatchError)
    held.clear()
    gc.collect()
    assert sum(1 for _ in loader) == len(loader), "after freeing them the loader goes on"


@pytest.mark.skipif(not has_torch(), reason="torch is not installed")
def test_torch_tensors_are_channels_last_views(train):
    import torch

    loader = shardfeed.Loader(train, batch_size=4, size=32)
    assert loader.output == "torch"
    images, labels = next(iter(loader))
    assert images.dtype == torch.uint8 and labels.dtype == torch.int64
    assert images.shape == (4, 3, 32, 32)
    assert images.is_contiguous(memory_format=torch.channels_last)
    assert labels.shape == (4,) and int(labels.min()) >= 0


def test_an_unconsumed_capsule_gives_its_batch_back(train):
    loader = shardfeed.Loader(train, batch_size=4, size=32, prefetch=2, output="dlpack")
    n = 0
    for images, labels in loader:
        capsule = images.__dlpack__()  # made and dropped without a consumer taking it
        del capsule
        n += 1
    # With two buffers, a capsule that kept its batch would have stopped the loop.
    assert n == len(loader)
