"""shardfeed.Dataset: random access, and safe to use in fork()ed DataLoader workers;
shardfeed.shard / synth mirror the CLI."""

import os

import pytest

import shardfeed


def test_random_access(train):
    ds = shardfeed.Dataset(train)
    assert len(ds) == 48
    assert ds.classes == sorted(ds.classes) and len(ds.classes) == 4
    image, label = ds[0]
    assert image[:2] == b"\xff\xd8" and 0 <= label < 4
    assert ds[-1] == ds[len(ds) - 1]
    rec = ds.record(5)
    assert rec["image"] == ds[5][0] and rec["label"] == ds[5][1]
    assert rec["path"].startswith("train/") and rec["format"] == "jpeg"
    assert rec["width"] > 0 and rec["height"] > 0
    with pytest.raises(IndexError, match="record 48 out of range"):
        ds[48]
    with pytest.raises(IndexError):
        ds[-49]
    assert "48 records" in repr(ds)


def test_dataset_works_in_a_forked_child(train):
    ds = shardfeed.Dataset(train)
    want = ds[7]
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the memory map is shared, nothing to re-open
        ok = ds[7] == want
        os.write(w, b"1" if ok else b"0")
        os._exit(0)
    os.close(w)
    assert os.read(r, 1) == b"1"
    os.waitpid(pid, 0)


def test_a_loader_refuses_to_run_in_a_forked_child(train):
    loader = shardfeed.Loader(train, batch_size=4, size=32, output="numpy")
    next(iter(loader))
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            next(iter(loader))
            msg = b"no error"
        except RuntimeError as e:
            msg = str(e).encode()
        except BaseException as e:  # noqa: BLE001
            msg = repr(e).encode()
        os.write(w, msg[:4000])
        del loader  # dropping it in the child must not join the parent's threads
        os._exit(0)
    os.close(w)
    msg = os.read(r, 4096).decode()
    os.waitpid(pid, 0)
    assert "fork" in msg and "threads" in msg, msg
    assert sum(1 for _ in loader) == len(loader), "the parent's loader goes on"


def test_shard_mirrors_the_cli(tmp_path, shards):
    src = tmp_path / "images"
    shardfeed.synth(src, classes=2, per_class=3, val_per_class=0, seed=1)
    out = shardfeed.shard(src, tmp_path / "out", shard_size="1MiB", no_shuffle=True)
    assert len(out) == 1 and out[0]["records"] == 6 and out[0]["skipped"] == []
    dest = out[0]["out"]
    assert len(shardfeed.Dataset(dest)) == 6
    with pytest.raises(shardfeed.IngestError, match="--force|force|exists"):
        shardfeed.shard(src, tmp_path / "out")
    classes = shardfeed.Dataset(dest).classes
    again = shardfeed.shard(src, tmp_path / "out", force=True, shards=2, classes=classes)
    assert again[0]["shards"] == 2 and again[0]["classes"] == 2
    with pytest.raises(ValueError, match="not both"):
        shardfeed.shard(src, tmp_path / "x", shards=2, shard_size="1MiB")
    with pytest.raises(ValueError, match="not a size"):
        shardfeed.shard(src, tmp_path / "x", shard_size="big")
    with pytest.raises(shardfeed.IngestError):
        shardfeed.shard(tmp_path / "nothing-here", tmp_path / "y")
