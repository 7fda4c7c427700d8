"""Batches for training: DataLoaders over any map-style Dataset of dict samples, seeded per epoch.

A sample (and a batch after collation) is a dict with ``"input"`` and ``"target"`` tensors
``[B, C, *spatial]`` and optional extras (``"lesion_mask"``, ``"masks"``, ``"ct"``, ...), which the
training modules pass to the loss as context keywords. Any Dataset or DataLoader that yields such
dicts works; of spectdl's data package only the seed mixing (:func:`spectdl.data.seeding.mix_seed`,
the one simulations use) is needed here.
"""

from __future__ import annotations

import math
from typing import Any, Iterator, Mapping

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from spectdl.data.seeding import mix_seed
from spectdl.errors import InputError
from spectdl.training.config import DataConfig


class EpochSampler(DistributedSampler):
    """Indices of one epoch: a permutation drawn from ``(seed, epoch)`` (or ``0..n-1`` in order),
    split between the processes of a distributed run.

    The order depends only on the seed and the epoch, never on how many epochs this process has
    run, so a run resumed at epoch ``e`` sees the batches the uninterrupted run saw. Lightning calls
    :meth:`set_epoch` before each epoch. The sampler also reseeds ``worker_generator`` (give it to the
    DataLoader as ``generator=``) with ``(seed, epoch)``, which fixes the seeds of the worker processes.

    It subclasses ``DistributedSampler`` so that Lightning leaves it in place under DDP; the rank
    and the number of processes are read from ``torch.distributed`` when iterating (1 process when
    it is not initialised). Like ``DistributedSampler``, each process gets ``ceil(n / world)``
    indices, the list padded by repeating its start.
    """

    def __init__(self, length: int, seed: int, shuffle: bool = True):  # noqa: D107 - no super().__init__
        # DistributedSampler.__init__ needs an initialised process group; resolve it lazily instead.
        if not isinstance(length, int) or length < 1:
            raise InputError(f"EpochSampler: length={length!r}; expected a positive number of samples")
        self.length = length
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.epoch = 0
        self.worker_generator = torch.Generator()
        self.worker_generator.manual_seed(mix_seed(self.seed, 0, 1))

    @staticmethod
    def _layout() -> tuple[int, int]:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.worker_generator.manual_seed(mix_seed(self.seed, self.epoch, 1))

    def __len__(self) -> int:
        return math.ceil(self.length / self._layout()[1])

    def __iter__(self) -> Iterator[int]:
        rank, world = self._layout()
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(mix_seed(self.seed, self.epoch, 0))
            order = torch.randperm(self.length, generator=g).tolist()
        else:
            order = list(range(self.length))
        total = math.ceil(self.length / world) * world
        order = (order * math.ceil(total / self.length))[:total]
        return iter(order[rank:total:world])


def make_loader(data: Any, config: DataConfig, seed: int, train: bool, name: str) -> DataLoader | None:
    """A DataLoader for ``data``: a DataLoader is returned as is, a Dataset gets an :class:`EpochSampler`.

    Args:
        data: a map-style Dataset (``len`` and ``__getitem__``), a DataLoader, or ``None``.
        config: batch size, workers and shuffling.
        seed: the run's seed (the validation loader uses ``seed + 1``).
        train: shuffle (if ``config.shuffle``) and ``drop_last`` apply to the training loader only.
        name: the argument's name, for messages.
    """
    if data is None or isinstance(data, DataLoader):
        return data
    if not isinstance(data, Dataset) and not (hasattr(data, "__getitem__") and hasattr(data, "__len__")):
        raise InputError(
            f"{name}: expected a torch Dataset (with __len__ and __getitem__) or a DataLoader, found {type(data).__name__}"
        )
    try:
        n = len(data)
    except TypeError:
        raise InputError(f"{name}: an iterable dataset needs a DataLoader built by you; found {type(data).__name__}")
    if n < 1:
        raise InputError(f"{name}: the dataset is empty; expected at least one sample")
    sampler = EpochSampler(n, seed if train else seed + 1, shuffle=train and config.shuffle)
    batch_size = config.batch_size if train else (config.val_batch_size or config.batch_size)
    return DataLoader(
        data,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=config.num_workers,
        pin_memory=config.pin_memory,
        drop_last=train and config.drop_last,
        generator=sampler.worker_generator,
        persistent_workers=False,
    )


def split_batch(batch: Any) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """``(input, target, context)`` of a dict batch; context holds every other key (loss keywords)."""
    if not isinstance(batch, Mapping):
        raise InputError(
            f"batch: expected a dict with 'input' and 'target' tensors, found {type(batch).__name__}"
        )
    missing = [k for k in ("input", "target") if k not in batch]
    if missing:
        raise InputError(f"batch: missing key {missing[0]!r}; found keys {sorted(batch)}, expected 'input' and 'target'")
    x, y = batch["input"], batch["target"]
    for key, t in (("input", x), ("target", y)):
        if not isinstance(t, torch.Tensor) or t.dim() < 3 or not t.is_floating_point():
            found = f"{tuple(t.shape)} {t.dtype}" if isinstance(t, torch.Tensor) else type(t).__name__
            raise InputError(f"batch[{key!r}]: found {found}; expected a floating tensor [B, C, *spatial]")
    if x.shape[0] != y.shape[0]:
        raise InputError(f"batch: input has {x.shape[0]} samples and target {y.shape[0]}; expected equal batch sizes")
    context = {k: v for k, v in batch.items() if k not in ("input", "target")}
    return x, y, context
