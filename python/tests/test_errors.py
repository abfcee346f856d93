"""Errors reach Python as exceptions carrying the engine's message (file, record, reason); bad
records in non-strict mode are replaced and counted."""

import os

import pytest

import shardfeed


def test_a_missing_path_is_file_not_found(tmp_path):
    missing = tmp_path / "no-such-dataset"
    with pytest.raises(FileNotFoundError, match="no-such-dataset"):
        shardfeed.Loader(missing, batch_size=4)
    with pytest.raises(FileNotFoundError, match="no-such-dataset"):
        shardfeed.Dataset(missing)


def test_a_folder_that_is_not_a_dataset(tmp_path):
    (tmp_path / "manifest.json").write_text("{ not json")
    with pytest.raises(shardfeed.DatasetError, match="manifest.json"):
        shardfeed.Loader(tmp_path, batch_size=4)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(batch_size=0), ValueError, "batch_size must be at least 1"),
        (dict(batch_size=-3), ValueError, "batch_size must be at least 1"),
        (dict(batch_size=2.5), TypeError, "batch_size must be an int"),
        (dict(batch_size=4, transform="crop"), ValueError, "transform must be 'train' or 'val'"),
        (dict(batch_size=4, size=0), ValueError, "size must be at least 1"),
        (dict(batch_size=4, rank=2, world=2), ValueError, "rank 2 is out of range"),
        (dict(batch_size=4, world=0), ValueError, "world must be at least 1"),
        (dict(batch_size=4, last_batch="keep"), ValueError, "last_batch must be"),
        (dict(batch_size=4, prefetch=1), ValueError, "prefetch must be at least 2"),
        (dict(batch_size=4, shuffle="random"), ValueError, "shuffle must be"),
        (dict(batch_size=4, decoder="pillow"), ValueError, "pillow"),
        (dict(batch_size=4, output="jax"), ValueError, "output must be"),
        (dict(batch_size=4, remote=1234), TypeError, "remote must be"),
        (dict(batch_size=4, remote=" , "), ValueError, "at least one host:port"),
        (dict(batch_size=1000, last_batch="drop", full_batches=True), ValueError,
         "cannot give each of 1 ranks a multiple of 1000"),
        (dict(batch_size=4, scale=(0.5, 0.1)), ValueError, "the transform from epoch 0"),
    ],
)
def test_bad_arguments(train, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        shardfeed.Loader(train, **kwargs)


def damage_a_record(dataset_dir):
    """Overwrites bytes in the middle of the first shard's record data (its checksum then
    fails); returns the shard's path."""
    shard = sorted(dataset_dir.glob("shard-*.sfs"))[0]
    data = bytearray(shard.read_bytes())
    mid = len(data) // 3
    data[mid : mid + 64] = bytes(64)
    shard.write_bytes(bytes(data))
    return shard


def test_a_corrupt_record_is_replaced_and_counted(copy_dataset):
    d = copy_dataset()
    shard = damage_a_record(d)
    loader = shardfeed.Loader(d, batch_size=8, size=32, output="numpy")
    n = sum(len(labels) for _, labels in loader)
    assert n == loader.samples_per_epoch, "the batch kept its size"
    m = loader.metrics()
    assert m["failures"] >= 1
    f = loader.failures()[0]
    assert f["shard"] == str(shard) and f["replaced_by"] is not None
    assert shard.name in f["message"] and "checksum" in f["message"]


def test_a_corrupt_record_in_strict_mode_raises_naming_it(copy_dataset):
    d = copy_dataset()
    shard = damage_a_record(d)
    loader = shardfeed.Loader(d, batch_size=8, size=32, strict=True, output="numpy")
    with pytest.raises(shardfeed.BatchError, match=f"{shard.name} record \\d+ .*strict mode"):
        for _ in loader:
            pass
    ds = shardfeed.Dataset(d)
    with pytest.raises(shardfeed.DatasetError, match="checksum"):
        for i in range(len(ds)):
            ds[i]


def test_a_truncated_shard_does_not_open(copy_dataset):
    d = copy_dataset()
    shard = sorted(d.glob("shard-*.sfs"))[0]
    with open(shard, "r+b") as f:
        f.truncate(os.path.getsize(shard) - 100)
    with pytest.raises(shardfeed.DatasetError, match=shard.name):
        shardfeed.Loader(d, batch_size=4)
    with pytest.raises(shardfeed.DatasetError, match=shard.name):
        shardfeed.Dataset(d)


def test_errors_derive_from_shardfeed_error():
    for e in (shardfeed.DatasetError, shardfeed.BatchError, shardfeed.BuffersHeldError,
              shardfeed.IngestError):
        assert issubclass(e, shardfeed.ShardfeedError)


def test_unreachable_remote_workers_raise_naming_them(train):
    # Port 9 (discard) on loopback: nothing listens, connections are refused.
    loader = shardfeed.Loader(train, batch_size=4, remote="127.0.0.1:9", deadline=0.5)
    with pytest.raises(shardfeed.BatchError, match="no worker answered.*127.0.0.1:9"):
        for _ in loader:
            pass
