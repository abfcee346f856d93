"""Ranks split every epoch: disjoint equal shares that cover the dataset (pad repeats records
from the start of the order, drop leaves out the last ones); defaults from torchrun's
environment."""

import pytest

import shardfeed
from conftest import to_numpy


def test_two_ranks_split_the_epoch(train):
    ds = shardfeed.Dataset(train)
    n = len(ds)
    for last_batch in ("pad", "drop"):
        loaders = [
            shardfeed.Loader(train, batch_size=5, size=32, rank=r, world=2, last_batch=last_batch,
                             workers=1, output="numpy")
            for r in range(2)
        ]
        for epoch in (0, 3):
            orders = [l.order(epoch) for l in loaders]
            assert len(orders[0]) == len(orders[1]) == loaders[0].samples_per_epoch
            both = orders[0] + orders[1]
            if last_batch == "drop":
                assert len(set(both)) == len(both), "no record twice"
            else:
                assert set(both) == set(range(n)), "every record read"
            # the labels each rank yields are those of its records, in order
            for loader, order in zip(loaders, orders):
                loader.set_epoch(epoch)
                labels = [int(x) for _, lab in loader for x in to_numpy(lab)]
                assert labels == [ds[i][1] for i in order]
            if last_batch == "pad":
                assert len(both) >= n and len(both) - n < 2, "fewer duplicates than ranks"
            else:
                assert n - 2 < len(both) <= n, "fewer left out than ranks"


def test_rank_and_world_default_from_the_environment(train, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    l = shardfeed.Loader(train, batch_size=4, size=32, output="numpy")
    assert (l.rank, l.world) == (1, 2)
    assert l.state_dict()["world"] == 2
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match="rank 2 is out of range for world size 2"):
        shardfeed.Loader(train, batch_size=4, size=32, output="numpy")
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    l = shardfeed.Loader(train, batch_size=4, size=32, output="numpy")
    assert (l.rank, l.world) == (0, 1)


def test_rank_and_world_default_from_torch_distributed(train, monkeypatch, tmp_path):
    torch = pytest.importorskip("torch")
    import torch.distributed as dist

    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "5")  # torch.distributed's view wins over the variables
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    try:
        l = shardfeed.Loader(train, batch_size=4, size=32)
        assert (l.rank, l.world) == (0, 1)
        images, labels = next(iter(l))
        assert isinstance(images, torch.Tensor)
    finally:
        dist.destroy_process_group()
