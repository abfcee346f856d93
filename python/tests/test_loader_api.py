"""The Loader's Python API: iteration, epochs, len, metrics, output types, the GIL."""

import threading

import numpy as np
import pytest

import shardfeed
from conftest import batch_bytes


def test_iteration_len_and_epochs(train):
    loader = shardfeed.Loader(train, batch_size=10, size=32, output="numpy", workers=2)
    assert len(loader) == 5 and loader.samples_per_epoch == 48
    sizes = [len(labels) for _, labels in loader]
    assert sizes == [10, 10, 10, 10, 8]
    assert loader.epoch == 1, "a finished pass moves to the next epoch"
    first = [batch_bytes(*b) for b in loader]
    loader.set_epoch(1)
    assert [batch_bytes(*b) for b in loader] == first
    loader.set_epoch(0)
    assert [batch_bytes(*b) for b in loader] != first
    # A pass broken off restarts its epoch on the next iter(), as a DataLoader does.
    loader.set_epoch(4)
    it = iter(loader)
    a = batch_bytes(*next(it))
    assert batch_bytes(*next(iter(loader))) == a
    assert loader.batch_info == shardfeed.BatchInfo(4, 0, 0)


def test_full_batches_and_padding(train):
    loader = shardfeed.Loader(train, batch_size=10, size=32, output="numpy", full_batches=True,
                              transform="val", val_resize=40)
    sizes = [len(labels) for _, labels in loader]
    assert sizes == [10] * 5
    assert loader.batch_info.padding == 2


def test_numpy_output(train):
    loader = shardfeed.Loader(train, batch_size=4, size=24, output="numpy")
    images, labels = next(iter(loader))
    assert isinstance(images, np.ndarray) and images.dtype == np.uint8
    assert images.shape == (4, 3, 24, 24)
    assert images.strides == (24 * 24 * 3, 1, 24 * 3, 3), "NCHW over NHWC memory"
    assert labels.dtype == np.int64 and labels.shape == (4,)


def test_metrics(train):
    loader = shardfeed.Loader(train, batch_size=8, size=32, output="numpy")
    for _ in loader:
        pass
    m = loader.metrics()
    assert m["images"] == 48 and m["batches"] == 6 and m["failures"] == 0
    assert m["images_per_sec"] > 0 and m["workers"] == loader.workers
    assert loader.failures() == []


def test_the_gil_is_released_while_waiting(train):
    loader = shardfeed.Loader(train, batch_size=16, size=160, workers=1, output="numpy")
    count = 0
    stop = False

    def spin():
        nonlocal count
        while not stop:
            count += 1

    t = threading.Thread(target=spin)
    t.start()
    try:
        inner = loader._inner
        inner.start()
        before = count
        got = inner.next()  # decodes 16 images on one thread: tens of milliseconds
        during = count - before
    finally:
        stop = True
        t.join()
    assert got is not None
    assert during > 0, "another Python thread ran while the loader waited"


def test_closed_loader(train):
    with shardfeed.Loader(train, batch_size=4, size=32, output="numpy") as loader:
        images, _ = next(iter(loader))
    with pytest.raises(RuntimeError, match="closed"):
        next(iter(loader))
    assert images.sum() >= 0, "a batch outlives its loader"
