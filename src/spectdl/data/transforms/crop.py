"""Patches and slices: ``Crop``/``RandomCrop`` (e.g. 192×192 patches of planar scans) and
``AxialSlice``/``RandomAxialSlice`` (2-D axial slices of 3-D volumes: ``[C, x, y, z] -> [C, x, y]``),
``Channel``/``RandomChannel`` (one view of multi-view images, e.g. anterior or posterior)."""

from __future__ import annotations

from typing import Sequence

from spectdl.data.transforms.base import (
    Deterministic,
    Transform,
    keys_arg,
    need_generator,
    selected,
    spatial_dims,
    uniform_int,
)
from spectdl.errors import InputError


def _ints(values, owner: str, name: str, minimum: int) -> list[int]:
    try:
        out = [int(v) for v in values]
    except (TypeError, ValueError):
        raise InputError(f"{owner}: {name} must be a list of integers, found {values!r}") from None
    if any(v < minimum for v in out) or any(int(v) != v for v in values):
        raise InputError(f"{owner}: {name} must be integers >= {minimum}, found {values!r}")
    return out


class Crop(Deterministic):
    """The box ``start[i] : start[i] + size[i]`` along every spatial axis."""

    name = "crop"

    def __init__(self, start: Sequence[int], size: Sequence[int], keys: Sequence[str] | None = None):
        self.start = _ints(start, "Crop", "start", 0)
        self.size = _ints(size, "Crop", "size", 1)
        if len(self.start) != len(self.size):
            raise InputError(f"Crop: start {self.start} and size {self.size} have different lengths")
        self.keys = keys_arg(keys)

    def apply(self, sample):
        out = dict(sample)
        ks = selected(sample, self.keys, "Crop")
        if not ks:
            return out
        shape = spatial_dims(sample, ks, "Crop")
        if len(shape) != len(self.size):
            raise InputError(f"Crop: a {len(self.size)}-D box for a {len(shape)}-D sample of shape {shape}")
        for a, (s0, n, full) in enumerate(zip(self.start, self.size, shape)):
            if s0 + n > full:
                raise InputError(f"Crop: box {self.start}+{self.size} leaves axis {a} of length {full}")
        index = (slice(None),) + tuple(slice(s0, s0 + n) for s0, n in zip(self.start, self.size))
        for k in ks:
            out[k] = sample[k][index]
        return out

    def _args(self):
        return {"start": list(self.start), "size": list(self.size), "keys": self.keys}


class RandomCrop(Transform):
    """A patch of ``size`` at a uniformly drawn position (every position equally likely)."""

    def __init__(self, size: Sequence[int], keys: Sequence[str] | None = None):
        self.size = _ints(size, "RandomCrop", "size", 1)
        self.keys = keys_arg(keys)

    def draw(self, sample, generator):
        g = need_generator(generator, "RandomCrop")
        ks = selected(sample, self.keys, "RandomCrop")
        shape = spatial_dims(sample, ks, "RandomCrop")
        if len(shape) != len(self.size):
            raise InputError(f"RandomCrop: a {len(self.size)}-D patch for a {len(shape)}-D sample of shape {shape}")
        small = [a for a, (n, full) in enumerate(zip(self.size, shape)) if n > full]
        if small:
            raise InputError(f"RandomCrop: patch {self.size} is larger than the sample {list(shape)} along axes {small}")
        start = [uniform_int(g, 0, full - n) for n, full in zip(self.size, shape)]
        return Crop(start, self.size, self.keys)


class AxialSlice(Deterministic):
    """Slice ``index`` of 3-D tensors across spatial ``axis``: ``[C, x, y, z] -> [C, x, y]`` for the
    default ``axis=2`` (axial slices); ``axis=0`` takes one view of projections ``[C, views, u, v]``."""

    name = "axial_slice"

    def __init__(self, index: int, keys: Sequence[str] | None = None, axis: int = 2):
        self.index = _ints([index], "AxialSlice", "index", 0)[0]
        self.axis = _slice_axis(axis, "AxialSlice")
        self.keys = keys_arg(keys)

    def apply(self, sample):
        out = dict(sample)
        ks = selected(sample, self.keys, "AxialSlice")
        if not ks:
            return out
        shape = spatial_dims(sample, ks, "AxialSlice")
        if len(shape) != 3:
            raise InputError(f"AxialSlice: needs 3-D tensors [C, x, y, z], found spatial shape {shape}")
        if self.index >= shape[self.axis]:
            raise InputError(f"AxialSlice: index {self.index} is outside the {shape[self.axis]} slices of axis {self.axis}")
        for k in ks:
            out[k] = sample[k].select(1 + self.axis, self.index)
        return out

    def _args(self):
        return {"index": self.index, "keys": self.keys, "axis": self.axis}


class Channel(Deterministic):
    """Channel ``index`` of every selected key that has more than one channel, ``[C, ...] -> [1, ...]``;
    single-channel keys (labels, masks drawn once for all views) are kept as they are. Planar
    whole-body scans store their anterior and posterior views as two channels in one pixel frame."""

    name = "channel"

    def __init__(self, index: int, keys: Sequence[str] | None = None):
        self.index = _ints([index], "Channel", "index", 0)[0]
        self.keys = keys_arg(keys)

    def apply(self, sample):
        out = dict(sample)
        for k in selected(sample, self.keys, "Channel"):
            c = sample[k].shape[0]
            if c == 1:
                continue
            if self.index >= c:
                raise InputError(f"Channel: index {self.index} is outside the {c} channels of {k!r}")
            out[k] = sample[k][self.index : self.index + 1]
        return out

    def _args(self):
        return {"index": self.index, "keys": self.keys}


class RandomChannel(Transform):
    """A uniformly drawn channel (see :class:`Channel`), the same for every key: one view per sample."""

    def __init__(self, keys: Sequence[str] | None = None):
        self.keys = keys_arg(keys)

    def draw(self, sample, generator):
        g = need_generator(generator, "RandomChannel")
        counts = {sample[k].shape[0] for k in selected(sample, self.keys, "RandomChannel")} - {1}
        if len(counts) > 1:
            raise InputError(f"RandomChannel: the keys have {sorted(counts)} channels; expected one count (or 1)")
        return Channel(uniform_int(g, 0, (counts.pop() if counts else 1) - 1), self.keys)


def _slice_axis(axis, owner: str) -> int:
    if isinstance(axis, bool) or not isinstance(axis, int) or axis not in (0, 1, 2):
        raise InputError(f"{owner}: axis {axis!r}; expected a spatial axis 0, 1 or 2")
    return axis


class RandomAxialSlice(Transform):
    """A uniformly drawn slice across ``axis`` (see :class:`AxialSlice`)."""

    def __init__(self, keys: Sequence[str] | None = None, axis: int = 2):
        self.keys = keys_arg(keys)
        self.axis = _slice_axis(axis, "RandomAxialSlice")

    def draw(self, sample, generator):
        g = need_generator(generator, "RandomAxialSlice")
        shape = spatial_dims(sample, selected(sample, self.keys, "RandomAxialSlice"), "RandomAxialSlice")
        if len(shape) != 3:
            raise InputError(f"RandomAxialSlice: needs 3-D tensors [C, x, y, z], found spatial shape {shape}")
        return AxialSlice(uniform_int(g, 0, shape[self.axis] - 1), self.keys, self.axis)


class CentreCrop(Transform):
    """The box of ``size`` at the centre of the sample (start ``(n − size) // 2`` on each axis);
    e.g. validation patches of the size a fixed-input discriminator needs."""

    def __init__(self, size: Sequence[int], keys: Sequence[str] | None = None):
        self.size = _ints(size, "CentreCrop", "size", 1)
        self.keys = keys_arg(keys)

    def draw(self, sample, generator=None):
        shape = spatial_dims(sample, selected(sample, self.keys, "CentreCrop"), "CentreCrop")
        if len(shape) != len(self.size):
            raise InputError(f"CentreCrop: a {len(self.size)}-D box for a {len(shape)}-D sample of shape {shape}")
        return Crop([max(0, (n - s) // 2) for n, s in zip(shape, self.size)], self.size, self.keys)
