"""shardfeed: an ImageNet input pipeline for PyTorch training scripts.

Records live in large, checksummed, memory-mapped shard files (made by :func:`shard` or the
``shardfeed shard`` command). :class:`Loader` reads, decodes and augments them on Rust threads
(one per core, sharing one memory map: no worker processes) and hands out batches without a copy::

    import shardfeed, torch

    loader = shardfeed.Loader("/data/imagenet-shards/train", batch_size=256)
    for epoch in range(90):
        loader.set_epoch(epoch)
        for images, labels in loader:       # uint8 (N, 3, H, W) channels-last, int64 (N,)
            images = images.cuda(non_blocking=True).float().sub_(mean).div_(std)
            ...

:class:`Dataset` gives random access to the records (``ds[i]`` -> ``(jpeg_bytes, label)``) for
users who bring their own transforms.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Tuple

from ._shardfeed import (
    DEFAULT_MAX_PIXELS,
    BatchError,
    BuffersHeldError,
    Dataset,
    DatasetError,
    IngestError,
    ShardfeedError,
    __version__,
    _Array,
    _Loader,
    shard,
    synth,
)

__all__ = [
    "Loader",
    "Dataset",
    "BatchInfo",
    "shard",
    "synth",
    "ShardfeedError",
    "DatasetError",
    "BatchError",
    "BuffersHeldError",
    "IngestError",
    "DEFAULT_MAX_PIXELS",
    "__version__",
]


class BatchInfo(NamedTuple):
    """Where the last batch handed out came from."""

    epoch: int
    """The epoch."""
    index: int
    """The batch's number in its epoch, from 0."""
    padding: int
    """How many of its images are padding duplicates (``last_batch="pad"``): the last ones.
    Leave them out of evaluation metrics."""


def _int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    value = int(value.__index__())
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {value}")
    return value


def _env_int(name: str) -> Optional[int]:
    v = os.environ.get(name)
    if v is None or v.strip() == "":
        return None
    try:
        return int(v)
    except ValueError:
        raise ValueError(f"the environment variable {name}={v!r} is not an integer") from None


def _rank_world(rank: Optional[int], world: Optional[int]) -> Tuple[int, int]:
    """rank and world as given, else from an initialised torch.distributed, else from the
    RANK / WORLD_SIZE variables torchrun sets, else 0 and 1."""
    if rank is None or world is None:
        d_rank = d_world = None
        torch = sys.modules.get("torch")  # initialised only if the script imported torch
        dist = getattr(torch, "distributed", None) if torch is not None else None
        if dist is not None and dist.is_available() and dist.is_initialized():
            d_rank, d_world = dist.get_rank(), dist.get_world_size()
        else:
            d_rank, d_world = _env_int("RANK"), _env_int("WORLD_SIZE")
        if rank is None:
            rank = d_rank if d_rank is not None else 0
        if world is None:
            world = d_world if d_world is not None else 1
    rank = _int("rank", rank, 0)
    world = _int("world", world, 1)
    if rank >= world:
        raise ValueError(f"rank {rank} is out of range for world size {world}")
    return rank, world


def _converter(output: str):
    """A function from an exported array to what the loop yields."""
    if output == "auto":
        try:
            import torch  # noqa: F401

            output = "torch"
        except ImportError:
            output = "numpy"
    if output == "torch":
        import torch

        return torch.from_dlpack, "torch"
    if output == "numpy":
        import numpy

        return numpy.asarray, "numpy"
    if output == "dlpack":
        return (lambda a: a), "dlpack"
    raise ValueError(f"output must be 'auto', 'torch', 'numpy' or 'dlpack', not {output!r}")


class Loader:
    """Batches of augmented images from a shardfeed dataset, in an order fixed by
    (seed, epoch, rank, world) and resumable at any batch.

    Iterating yields ``(images, labels)``: ``images`` is ``uint8`` of shape ``(N, 3, H, W)``
    whose memory is NHWC (PyTorch's ``channels_last``), ``labels`` is ``int64`` of shape
    ``(N,)``. They are torch tensors when torch is installed (``output="auto"``), numpy arrays
    otherwise; either way they view the engine's batch buffer without a copy. The buffer goes
    back to the loader's pool when the last tensor or array viewing it is freed. Treat the
    images as read-only (``images.float()`` and ``images.cuda()`` copy).

    Memory: the loader owns ``prefetch`` batch buffers. Batches being filled, waiting, and held
    by you share them, so if your code keeps ``prefetch`` batches alive at once (a list of
    batches, or tensors still queued for an asynchronous copy), the next batch cannot be made
    and iteration raises :class:`BuffersHeldError` instead of hanging. Raise ``prefetch`` (each
    buffer is ``batch_size * size * size * 3`` bytes) or free the batches earlier
    (``images = images.cuda(non_blocking=True)`` frees the CPU one once the copy is done).

    Epochs: ``set_epoch(e)`` chooses the epoch the next iteration yields, as
    ``DistributedSampler.set_epoch`` does; without it the epoch moves on by one after each
    complete pass, so every pass is a fresh shuffle. ``len(loader)`` is the number of batches
    per epoch (the same every epoch).

    Resume: ``state_dict()`` is a small dict of plain values (``torch.save`` it with the
    model); ``load_state_dict(sd)`` makes the next iteration start exactly at the batch after
    the last one handed out before ``state_dict()`` was called, with the same bytes an
    uninterrupted run would have produced. Save it in the same step as the model, as with
    torchdata's ``StatefulDataLoader``.

    Distributed: every rank reads its own equal share of every epoch (``last_batch="pad"``
    repeats a few records so shares are equal; ``"drop"`` leaves the last few out). ``rank``
    and ``world`` default to ``torch.distributed``'s when it is initialised, else to the
    ``RANK`` and ``WORLD_SIZE`` variables torchrun sets, else 0 and 1.

    Threads: the loader's worker threads decode and augment; no processes are made and the
    dataset is mapped once. The GIL is released while the loop waits for a batch. A loader
    cannot be used in a child made by ``fork`` (its threads do not survive it): it raises
    ``RuntimeError`` there; make loaders in the process that iterates them.

    Args:
        path: a dataset directory (with ``manifest.json``), or a directory holding ``train/``
            and ``val/``, of which ``transform`` picks one.
        batch_size: images per batch.
        transform: ``"train"`` (RandomResizedCrop + horizontal flip, a fresh shuffle each
            epoch) or ``"val"`` (resize to ``size / 0.875`` + centre crop, in record order).
        size: output side in pixels.
        seed: the seed of the order and of every augmentation.
        workers: decode threads; ``None`` for one per core.
        rank, world: this process's share of each epoch (see above).
        last_batch: ``"pad"`` or ``"drop"``, how ranks get equal counts.
        prefetch: batch buffers (at least 2).
        readahead: batches whose records are read ahead (``posix_fadvise``); 0 turns it off.
        shuffle: ``"auto"`` (global for train, sequential for val), ``"global"``,
            ``"window"`` (shards shuffled, then records within windows of ``window`` shards:
            for data larger than the page cache) or ``"sequential"``.
        full_batches: round each rank's count to whole batches (every batch ``batch_size``).
        strict: a record that fails to read or decode raises :class:`BatchError`; otherwise
            it is replaced by the next record that decodes and counted in ``metrics()``.
        decoder: ``"turbo"`` (libjpeg-turbo, decodes only the crop) or ``"zune"``.
        dct_downscale: let libjpeg-turbo downscale large crops inside the IDCT (faster, not
            torchvision's exact pixels).
        max_pixels: an image whose header declares more pixels is a failed record.
        val_resize: the shorter side before the centre crop (default ``round(size / 0.875)``).
        scale, ratio: RandomResizedCrop's ranges (torchvision's defaults).
        output: ``"auto"``, ``"torch"``, ``"numpy"`` or ``"dlpack"`` (the raw exporters).
        remote: ``"host:port[,host:port...]"`` of ``shardfeed serve`` workers: the same batches,
            byte for byte, computed on those hosts (the dataset must be visible here too: its
            manifest and shard index give the order). ``token_file``: their shared secret;
            ``deadline``: seconds a worker has to answer before its batch goes to another (and,
            with none reachable, before the loader raises ``BatchError``).
    """

    def __init__(
        self,
        path: "os.PathLike[str] | str",
        batch_size: int,
        transform: str = "train",
        size: int = 224,
        seed: int = 0,
        workers: Optional[int] = None,
        rank: Optional[int] = None,
        world: Optional[int] = None,
        last_batch: str = "pad",
        remote: Optional[str] = None,
        *,
        prefetch: int = 4,
        readahead: int = 8,
        shuffle: str = "auto",
        window: int = 16,
        full_batches: bool = False,
        strict: bool = False,
        decoder: str = "turbo",
        dct_downscale: bool = False,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        val_resize: Optional[int] = None,
        scale: Tuple[float, float] = (0.08, 1.0),
        ratio: Tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
        output: str = "auto",
        decode_only: bool = False,
        token_file: "Optional[os.PathLike[str] | str]" = None,
        deadline: float = 30.0,
    ) -> None:
        if remote is not None and not isinstance(remote, str):
            raise TypeError("remote must be a 'host:port[,host:port...]' string")
        path = os.fspath(path)
        if not isinstance(path, str):
            path = os.fsdecode(path)
        batch_size = _int("batch_size", batch_size, 1)
        size = _int("size", size, 1)
        seed = _int("seed", seed, 0)
        workers = 0 if workers is None else _int("workers", workers, 1)
        prefetch = _int("prefetch", prefetch, 2)
        readahead = _int("readahead", readahead, 0)
        window = _int("window", window, 1)
        max_pixels = _int("max_pixels", max_pixels, 1)
        if val_resize is not None:
            val_resize = _int("val_resize", val_resize, 1)
        if transform not in ("train", "val"):
            raise ValueError(f"transform must be 'train' or 'val', not {transform!r}")
        if last_batch not in ("pad", "drop"):
            raise ValueError(f"last_batch must be 'pad' or 'drop', not {last_batch!r}")
        rank, world = _rank_world(rank, world)
        self._convert, self.output = _converter(output)
        self._inner = _Loader(
            path,
            batch_size,
            transform,
            size,
            seed,
            workers,
            rank,
            world,
            last_batch,
            prefetch,
            readahead,
            shuffle,
            window,
            bool(full_batches),
            bool(strict),
            decoder,
            bool(dct_downscale),
            max_pixels,
            val_resize,
            (float(scale[0]), float(scale[1])),
            (float(ratio[0]), float(ratio[1])),
            bool(decode_only),
            remote,
            None if token_file is None else os.fspath(token_file),
            float(deadline),
        )
        self.batch_size = batch_size
        self.rank = rank
        self.world = world
        self.batch_info: Optional[BatchInfo] = None

    def __iter__(self) -> Iterator[Tuple[Any, Any]]:
        self._inner.start()
        return self

    def __next__(self) -> Tuple[Any, Any]:
        got = self._inner.next()
        if got is None:
            raise StopIteration
        images, labels, epoch, index, padding = got
        self.batch_info = BatchInfo(epoch, index, padding)
        convert = self._convert
        return convert(images), convert(labels)

    def __len__(self) -> int:
        return len(self._inner)

    def set_epoch(self, epoch: int) -> None:
        """Makes the next iteration yield ``epoch``'s batches (its order and augmentations)."""
        self._inner.set_epoch(_int("epoch", epoch, 0))

    @property
    def epoch(self) -> int:
        """The epoch being iterated, or the one the next iteration yields."""
        return self._inner.epoch

    @property
    def samples_per_epoch(self) -> int:
        """This rank's images per epoch."""
        return self._inner.samples_per_epoch

    @property
    def workers(self) -> int:
        """Decode threads."""
        return self._inner.workers

    @property
    def path(self) -> str:
        """The dataset directory read."""
        return os.fspath(self._inner.path)

    def order(self, epoch: int) -> List[int]:
        """The global record numbers this rank reads in ``epoch``, in order (``Dataset``
        indexes; padding duplicates included)."""
        return self._inner.order(_int("epoch", epoch, 0))

    def state_dict(self) -> Dict[str, Any]:
        """Where the next batch comes from (``epoch``, ``batch``) and what the order depends on,
        as plain values."""
        return self._inner.state_dict()

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Makes the next iteration resume at ``state_dict``'s position, byte for byte. Raises
        ``ValueError`` when the state was saved with settings that change the order or the
        batches (seed, batch size, world size, transform, size, ...)."""
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict must be a dict, not {type(state_dict).__name__}")
        self._inner.load_state_dict(state_dict)

    def metrics(self) -> Dict[str, Any]:
        """Counters since the loader was made: ``images``, ``batches``, ``images_per_sec``,
        ``failures`` (records that failed to read or decode and were replaced), seconds per
        stage summed over workers (``read_s``, ``decode_s``, ``augment_s``), ``busy_fraction``,
        ``consumer_wait_s``, queue depth, ``readahead_bytes``."""
        return self._inner.metrics()

    def failures(self) -> List[Dict[str, Any]]:
        """The records that failed and were replaced (first 10,000): shard file, record, source
        path, reason, replacement, and the engine's one-line ``message``."""
        return self._inner.failures()

    def close(self) -> None:
        """Stops the threads and frees the buffers (those still viewed by tensors go when the
        tensors do)."""
        self._inner.close()

    def __enter__(self) -> "Loader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return repr(self._inner)
