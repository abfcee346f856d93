"""state_dict / load_state_dict resume exactly: the batches after a restart are byte for byte
those of the uninterrupted run, in the epoch where it stopped and the ones after."""

import pickle

import pytest

import shardfeed
from conftest import batch_bytes

OPTS = dict(batch_size=6, size=40, seed=5, workers=2, output="numpy")


def run(loader, epochs):
    """[(epoch, index, bytes)] over `epochs` passes without set_epoch (the epoch advances)."""
    out = []
    for _ in range(epochs):
        for images, labels in loader:
            info = loader.batch_info
            out.append((info.epoch, info.index, batch_bytes(images, labels)))
    return out


@pytest.mark.parametrize("stop_after", [1, 5, 8])
def test_resume_mid_epoch_is_exact(train, stop_after):
    full = run(shardfeed.Loader(train, **OPTS), 2)
    per = len(shardfeed.Loader(train, **OPTS))
    assert per == 8 and len(full) == 16

    first = shardfeed.Loader(train, **OPTS)
    seen = []
    for images, labels in first:
        seen.append(batch_bytes(images, labels))
        if len(seen) == stop_after:
            break
    state = first.state_dict()
    expect_epoch, expect_batch = divmod(stop_after, per)
    assert (state["epoch"], state["batch"]) == (expect_epoch, expect_batch)
    state = pickle.loads(pickle.dumps(state))  # as torch.save / torch.load would
    del first

    second = shardfeed.Loader(train, **OPTS)
    second.load_state_dict(state)
    rest = run(second, 2 if stop_after < per else 1)
    assert [b for _, _, b in full[:stop_after]] == seen
    assert [b for _, _, b in rest] == [b for _, _, b in full[stop_after:]]
    assert [(e, i) for e, i, _ in rest] == [(e, i) for e, i, _ in full[stop_after:]]


def test_state_after_a_whole_epoch_points_at_the_next(train):
    loader = shardfeed.Loader(train, **OPTS)
    assert loader.state_dict()["epoch"] == 0 and loader.state_dict()["batch"] == 0
    for _ in loader:
        pass
    s = loader.state_dict()
    assert (s["epoch"], s["batch"]) == (1, 0)
    assert loader.epoch == 1


def test_set_epoch_keeps_a_loaded_position_of_the_same_epoch(train):
    full = run(shardfeed.Loader(train, **OPTS), 1)
    loader = shardfeed.Loader(train, **OPTS)
    loader.load_state_dict({**loader.state_dict(), "batch": 3})
    loader.set_epoch(0)  # the usual loop calls set_epoch(epoch) before iterating
    assert [b for _, _, b in run(loader, 1)] == [b for _, _, b in full[3:]]


def test_a_state_from_other_settings_is_refused(train):
    state = shardfeed.Loader(train, **OPTS).state_dict()
    other = shardfeed.Loader(train, **{**OPTS, "seed": 6})
    with pytest.raises(ValueError, match="seed 5"):
        other.load_state_dict(state)
    with pytest.raises(KeyError, match="batch_size"):
        other.load_state_dict({"version": 1, "seed": 6})
    with pytest.raises(ValueError, match="past the end"):
        shardfeed.Loader(train, **OPTS).load_state_dict({**state, "batch": 8})


def test_another_rank_may_load_the_state(train):
    a = shardfeed.Loader(train, rank=0, world=2, **OPTS)
    next(iter(a))
    b = shardfeed.Loader(train, rank=1, world=2, **OPTS)
    b.load_state_dict(a.state_dict())
    assert b.state_dict()["batch"] == 1
