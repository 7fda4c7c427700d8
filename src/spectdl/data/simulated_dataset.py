"""A torch Dataset over the shards written by :func:`spectdl.data.simulate`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from spectdl.data._dataset import SeededDataset
from spectdl.data.shards import open_shard
from spectdl.data.simulation import load_manifest_json
from spectdl.data.transforms.base import Transform
from spectdl.errors import InputError

__all__ = ["SimulatedDataset"]

_PROJECTION_PREFIXES = ("counts_", "expected")
_INTEGER_KEYS = ("labels",)


class SimulatedDataset(SeededDataset):
    """Samples of one split of a simulation, as dicts of tensors ``[C, *spatial]``.

    ``"input"`` and ``"target"`` stack stored arrays along the channel axis; any stored key (e.g.
    ``"labels"``, ``"lesion_mask"``, ``"activity"``) and ``"index"`` (the sample's global index)
    can be asked for as well. For SPECTnet, ``input=("counts_full", "mu_per_cm"),
    target=("activity",), sinogram_rows=128`` gives the wrap-padded sinogram and the μ map as two
    channels; for low-dose pairs, ``input=("recon_low",), target=("recon_full",)``.

    Args:
        source: the simulation folder or its ``manifest.json``.
        split: a split of the manifest (``"train"``, ``"val"``, ``"test"``), or ``None`` for all samples.
        keys: the keys of each sample (``"input"``, ``"target"``, stored keys, ``"index"``).
        transform: a :class:`~spectdl.data.transforms.Transform` (drawn from a generator per
            ``(seed, epoch, index)``, see :class:`SeededDataset`) or any ``callable(sample) -> sample``.
        input: stored keys stacked into ``"input"``. Default: the counts of the lowest count level
            (its reconstruction when counts are not stored).
        target: stored keys stacked into ``"target"``. Default: ``activity`` when stored, else the
            counts of the highest count level.
        sinogram_rows: wrap-pad the view axis of projection keys (``counts_*``, ``expected``) to this
            many rows, row ``i`` being view ``i mod n_views`` (continues a 360° orbit), so that a
            120×128 sinogram stacks with a 128×128 μ map.
        seed: seed of the transforms' generators.
        dtype: floating dtype of ``input``, ``target`` and the other float keys; ``labels`` are int64,
            ``lesion_mask`` is given in ``dtype`` (0/1).
        record_params: add ``"transform_params"`` (JSON text for :func:`~spectdl.data.transforms.replay`).
        repeats: each sample appears this many times per epoch, each time with its own draw of the
            random transform (e.g. several random axial slices of a volume per epoch).

    HDF5 files are opened on first use in each process (DataLoader workers open their own) and
    closed by :meth:`close`.
    """

    def __init__(
        self,
        source: str | Path,
        split: str | None = "train",
        keys: Sequence[str] = ("input", "target"),
        transform: Transform | Callable | None = None,
        *,
        input: Sequence[str] | None = None,
        target: Sequence[str] | None = None,
        sinogram_rows: int | None = None,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
        record_params: bool = False,
        repeats: int = 1,
    ):
        super().__init__(transform, seed, record_params)
        if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
            raise InputError(f"repeats: expected a positive integer, found {repeats!r}")
        self.repeats = repeats
        manifest = load_manifest_json(source)
        # The per-sample records are not needed to read (shard and row follow from the layout);
        # dropping them keeps every DataLoader worker's copy small.
        n_samples = len(manifest["samples"])
        self.manifest = {k: v for k, v in manifest.items() if k != "samples"}
        self.shard_size = int(self.manifest["config"]["shard_size"])
        self.folder = Path(self.manifest["_path"]).parent
        self.stored = {k: (tuple(v["shape"]), v["dtype"]) for k, v in self.manifest["keys"].items()}
        splits = self.manifest["splits"]
        if split is None:
            self.start, self.stop = 0, n_samples
        elif split not in splits:
            raise InputError(f"split: {split!r} is not in the manifest; expected one of {sorted(splits)} or None")
        else:
            self.start, self.stop = splits[split]
        self.split = split
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise InputError(f"dtype: expected a floating torch.dtype, found {dtype!r}")
        self.dtype = dtype
        if sinogram_rows is not None and (isinstance(sinogram_rows, bool) or not isinstance(sinogram_rows, int) or sinogram_rows < 1):
            raise InputError(f"sinogram_rows: expected a positive integer or None, found {sinogram_rows!r}")
        self.sinogram_rows = sinogram_rows
        self.input = self._check_group("input", input if input is not None else self._default_input())
        self.target = self._check_group("target", target if target is not None else self._default_target())
        self.keys = self._check_keys(keys)
        self._files: dict[int, Any] = {}
        self._pid = os.getpid()
        self._n_total = n_samples

    # -------------------------------------------------------------- defaults and checks
    def _levels(self) -> list[str]:
        levels = self.manifest["config"]["counts"]["levels"]
        return sorted(levels, key=lambda n: (levels[n], n))

    def _default_input(self) -> tuple[str, ...]:
        low = self._levels()[0]
        for key in (f"counts_{low}", f"recon_{low}"):
            if key in self.stored:
                return (key,)
        raise InputError(f"input: the simulation stores neither counts_{low} nor recon_{low}; pass input=")

    def _default_target(self) -> tuple[str, ...]:
        high = self._levels()[-1]
        for key in ("activity", f"counts_{high}", f"recon_{high}", "expected"):
            if key in self.stored:
                return (key,)
        raise InputError(f"target: no default target is stored (found {sorted(self.stored)}); pass target=")

    def _check_group(self, name: str, keys: Sequence[str]) -> tuple[str, ...]:
        keys = (keys,) if isinstance(keys, str) else tuple(keys)
        if not keys:
            raise InputError(f"{name}: expected at least one stored key, found none")
        missing = [k for k in keys if k not in self.stored]
        if missing:
            raise InputError(f"{name}: {missing} are not stored in {self.folder}; expected keys among {sorted(self.stored)}")
        shapes = {k: self._shape(k) for k in keys}
        if len({s[1:] for s in shapes.values()}) > 1:
            hint = "; pass sinogram_rows= to wrap-pad the projections' view axis" if any(
                k.startswith(_PROJECTION_PREFIXES) for k in keys) else ""
            raise InputError(f"{name}: keys {shapes} have different spatial shapes and cannot be stacked{hint}")
        return keys

    def _check_keys(self, keys: Sequence[str]) -> tuple[str, ...]:
        keys = (keys,) if isinstance(keys, str) else tuple(keys)
        allowed = {"input", "target", "index"} | set(self.stored)
        bad = [k for k in keys if k not in allowed]
        if bad:
            raise InputError(f"keys: {bad} are unknown; expected among {sorted(allowed)}")
        return keys

    def _shape(self, key: str) -> tuple[int, ...]:
        shape = self.stored[key][0]
        if self.sinogram_rows is not None and self._is_projection(key):
            if self.sinogram_rows < shape[1]:
                raise InputError(f"sinogram_rows: {self.sinogram_rows} is fewer than the {shape[1]} views of {key!r}")
            shape = (shape[0], self.sinogram_rows) + shape[2:]
        return shape

    def _is_projection(self, key: str) -> bool:
        return self.manifest["config"]["phantom"] != "wholebody_planar" and key.startswith(_PROJECTION_PREFIXES)

    # -------------------------------------------------------------- reading
    def __len__(self) -> int:
        return (self.stop - self.start) * self.repeats

    def _file(self, shard: int):
        if os.getpid() != self._pid:  # a forked DataLoader worker: never share HDF5 handles
            self._files, self._pid = {}, os.getpid()
        f = self._files.get(shard)
        if f is None:
            f = open_shard(self.folder / self.manifest["shards"][shard]["file"])
            self._files[shard] = f
        return f

    def _read(self, f, key: str, row: int) -> torch.Tensor:
        t = torch.from_numpy(np.asarray(f[key][row]))
        if key in _INTEGER_KEYS:
            return t.to(torch.int64)
        t = t.to(self.dtype)
        if self.sinogram_rows is not None and self._is_projection(key):
            idx = torch.arange(self.sinogram_rows) % t.shape[1]
            t = t.index_select(1, idx)
        return t

    def __getitem__(self, i: int) -> dict[str, Any]:
        n = len(self)
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not -n <= i < n:
            raise InputError(f"index: expected an integer in [0, {n}) for split {self.split!r}, found {i!r}")
        i = int(i) % n
        index = self.start + i % (self.stop - self.start)
        # Repeat k of a sample draws its transform as if it were sample index + k·N: its own draw.
        draw = index + (i // (self.stop - self.start)) * self._n_total
        shard, row = divmod(index, self.shard_size)
        f = self._file(shard)
        cache: dict[str, torch.Tensor] = {}

        def get(key):
            if key not in cache:
                cache[key] = self._read(f, key, row)
            return cache[key]

        sample: dict[str, Any] = {}
        for key in self.keys:
            if key == "input":
                sample[key] = torch.cat([get(k).to(self.dtype) for k in self.input], 0)
            elif key == "target":
                sample[key] = torch.cat([get(k).to(self.dtype) for k in self.target], 0)
            elif key == "index":
                sample[key] = index
            else:
                sample[key] = get(key)
        return self._transform(sample, draw)

    def close(self) -> None:
        """Close the HDF5 files opened by this process."""
        for f in getattr(self, "_files", {}).values():
            try:
                f.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
        self._files = {}

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_files"] = {}  # h5py handles cannot be pickled; each process opens its own
        return state

    def __del__(self):
        self.close()
