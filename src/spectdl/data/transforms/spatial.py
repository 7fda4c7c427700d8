"""Flips, quarter turns and arbitrary rotations, applied alike to every selected key.

Axes are spatial: ``0 = x``, ``1 = y``, ``2 = z`` of a tensor ``[C, x, y(, z)]``. A rotation by θ in
the plane ``"xy"`` (``"xz"``, ``"yz"``) turns the first axis towards the second: the voxel at
``+x`` moves to ``+y``, as ``torch.rot90(t, 1, dims=(x, y))`` does. Rotations turn about the
centre of the array and assume isotropic voxels.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F

from spectdl.data.transforms.base import (
    MASK_KEYS,
    Deterministic,
    Transform,
    is_mask,
    keys_arg,
    need_generator,
    selected,
    spatial_dims,
    uniform,
    uniform_int,
)
from spectdl.errors import InputError

PLANES = {"xy": (0, 1), "xz": (0, 2), "yz": (1, 2)}
_ORDER = ("xy", "xz", "yz")


def _check_axes(axes, owner: str) -> list[int]:
    try:
        out = sorted({int(a) for a in axes})
    except (TypeError, ValueError):
        raise InputError(f"{owner}: axes must be spatial axis numbers (0 = x, 1 = y, 2 = z), found {axes!r}") from None
    if any(a not in (0, 1, 2) for a in out):
        raise InputError(f"{owner}: axes must be in {{0, 1, 2}} (x, y, z), found {axes!r}")
    return out


def _check_planes(planes, owner: str) -> list[str]:
    planes = [planes] if isinstance(planes, str) else list(planes)
    bad = [p for p in planes if p not in PLANES]
    if bad or not planes:
        raise InputError(f"{owner}: planes must be among {list(PLANES)}, found {planes!r}")
    return planes


def _check_plane_fits(plane: str, ndim: int, owner: str) -> tuple[int, int]:
    i, j = PLANES[plane]
    if j >= ndim:
        raise InputError(f"{owner}: plane {plane!r} needs 3 spatial axes, found a {ndim}-D sample")
    return i, j


class Flip(Deterministic):
    """Reverse the given spatial ``axes`` (an empty list is the identity)."""

    name = "flip"

    def __init__(self, axes: Sequence[int] = (), keys: Sequence[str] | None = None):
        self.axes = _check_axes(axes, "Flip")
        self.keys = keys_arg(keys)

    def apply(self, sample):
        out = dict(sample)
        ks = selected(sample, self.keys, "Flip")
        if not self.axes or not ks:
            return out
        ndim = len(spatial_dims(sample, ks, "Flip"))
        if max(self.axes) >= ndim:
            raise InputError(f"Flip: axis {max(self.axes)} does not exist in a {ndim}-D sample")
        for k in ks:
            out[k] = torch.flip(sample[k], [1 + a for a in self.axes])
        return out

    def _args(self):
        return {"axes": list(self.axes), "keys": self.keys}


class RandomFlip(Transform):
    """Flip each of ``axes`` independently with probability ``p``."""

    def __init__(self, axes: Sequence[int] = (0, 1), p: float = 0.5, keys: Sequence[str] | None = None):
        self.axes = _check_axes(axes, "RandomFlip")
        if not 0.0 <= float(p) <= 1.0:
            raise InputError(f"RandomFlip: p must be in [0, 1], found {p!r}")
        self.p = float(p)
        self.keys = keys_arg(keys)

    def draw(self, sample, generator):
        g = need_generator(generator, "RandomFlip")
        chosen = [a for a in self.axes if uniform(g, 0.0, 1.0) < self.p]
        return Flip(chosen, self.keys)


class Rot90(Deterministic):
    """Quarter turns: ``turns = {"xy": k, ...}`` rotates by ``k·90°`` in each plane (xy, then xz, then yz)."""

    name = "rot90"

    def __init__(self, turns: Mapping[str, int] | int = 1, keys: Sequence[str] | None = None):
        if not isinstance(turns, Mapping):
            turns = {"xy": turns}
        _check_planes(list(turns), "Rot90")
        self.turns = {p: int(turns[p]) % 4 for p in _ORDER if p in turns}
        self.keys = keys_arg(keys)

    def apply(self, sample):
        out = dict(sample)
        ks = selected(sample, self.keys, "Rot90")
        if not ks:
            return out
        ndim = len(spatial_dims(sample, ks, "Rot90"))
        for plane, k in self.turns.items():
            i, j = _check_plane_fits(plane, ndim, "Rot90")
            if k:
                for key in ks:
                    out[key] = torch.rot90(out[key], k, dims=(1 + i, 1 + j))
        return out

    def _args(self):
        return {"turns": dict(self.turns), "keys": self.keys}


class RandomRot90(Transform):
    """A uniformly drawn number of quarter turns (0–3) in each of ``planes``."""

    def __init__(self, planes: Sequence[str] = ("xy",), keys: Sequence[str] | None = None):
        self.planes = _check_planes(planes, "RandomRot90")
        self.keys = keys_arg(keys)

    def draw(self, sample, generator):
        g = need_generator(generator, "RandomRot90")
        return Rot90({p: uniform_int(g, 0, 3) for p in self.planes}, self.keys)


def rotation_matrix(angles_deg: Mapping[str, float], ndim: int) -> torch.Tensor:
    """``[ndim, ndim]`` float64 matrix of the rotations in xy, then xz, then yz (column vectors)."""
    R = torch.eye(ndim, dtype=torch.float64)
    for plane in _ORDER:
        a = float(angles_deg.get(plane, 0.0))
        if a == 0.0:
            continue
        i, j = _check_plane_fits(plane, ndim, "Rotate")
        if a % 90.0 == 0.0:  # exact quarter turns: no cos(90°) = 6e-17 residue
            c, s = [(1.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.0, -1.0)][int(a // 90.0) % 4]
        else:
            c, s = math.cos(math.radians(a)), math.sin(math.radians(a))
        G = torch.eye(ndim, dtype=torch.float64)
        G[i, i], G[j, j], G[j, i], G[i, j] = c, c, s, -s
        R = G @ R
    return R


def _sampling_grid(shape: tuple[int, ...], R: torch.Tensor, dtype, device) -> torch.Tensor:
    """``grid_sample`` grid: output voxel at centred coordinate ``p`` reads the input at ``Rᵀ p``."""
    coords = [torch.arange(n, dtype=torch.float64) - (n - 1) / 2.0 for n in shape]
    mesh = torch.stack(torch.meshgrid(*coords, indexing="ij"), -1)  # [*shape, ndim]
    src = mesh @ R  # row-vector form of Rᵀ p
    norm = src * torch.tensor([2.0 / n for n in shape], dtype=torch.float64)  # align_corners=False
    return norm.flip(-1).unsqueeze(0).to(device=device, dtype=dtype)  # grid_sample wants (last axis, ..., first)


class Rotate(Deterministic):
    """Rotate by ``angles_deg`` (``{"xy": a, "xz": b, "yz": c}``, or one angle for ``"xy"``), resampled once.

    Images use (bi/tri)linear interpolation, masks (``mask_keys`` and integer tensors) nearest
    neighbour; voxels that come from outside the array are 0. Linear interpolation conserves the
    sum of an object that stays inside the array to within the interpolation error (< 1% for
    smooth objects several voxels wide).
    """

    name = "rotate"

    def __init__(self, angles_deg: Mapping[str, float] | float = 0.0, keys: Sequence[str] | None = None,
                 mask_keys: Sequence[str] = MASK_KEYS):
        if not isinstance(angles_deg, Mapping):
            angles_deg = {"xy": angles_deg}
        _check_planes(list(angles_deg), "Rotate")
        self.angles_deg = {}
        for p in _ORDER:
            if p in angles_deg:
                v = float(angles_deg[p])
                if not math.isfinite(v):
                    raise InputError(f"Rotate: angles_deg[{p!r}] must be finite, found {v!r}")
                self.angles_deg[p] = v
        self.keys = keys_arg(keys)
        self.mask_keys = list(mask_keys)

    def apply(self, sample):
        out = dict(sample)
        ks = selected(sample, self.keys, "Rotate")
        if not ks or all(a == 0.0 for a in self.angles_deg.values()):
            return out
        shape = spatial_dims(sample, ks, "Rotate")
        if len(shape) < 2:
            raise InputError(f"Rotate: needs 2 or 3 spatial axes, found {len(shape)}")
        R = rotation_matrix(self.angles_deg, len(shape))
        grids: dict[tuple, torch.Tensor] = {}
        for k in ks:
            t = sample[k]
            mask = is_mask(k, t, self.mask_keys)
            work = t.to(torch.float32) if not t.is_floating_point() else t
            gk = (work.dtype, work.device)
            if gk not in grids:
                grids[gk] = _sampling_grid(shape, R, work.dtype, work.device)
            res = F.grid_sample(work.unsqueeze(0), grids[gk], mode="nearest" if mask else "bilinear",
                                padding_mode="zeros", align_corners=False)[0]
            out[k] = res.to(t.dtype) if not t.is_floating_point() else res
        return out

    def _args(self):
        return {"angles_deg": dict(self.angles_deg), "keys": self.keys, "mask_keys": list(self.mask_keys)}


class RandomRotate(Transform):
    """A random rotation in each of ``planes``: multiples of ``step_deg`` (e.g. 30° for cardiac
    studies, drawn uniformly from ``0, step, …, 360 − step``) or, without a step, uniform in ``range_deg``.

    ``one_plane=True`` (needs ``step_deg``) rotates in one plane only: one of the
    ``1 + len(planes)·(360/step − 1)`` rotations {identity, each non-zero multiple of the step in
    each plane} is drawn uniformly, the augmentation set of a cardiac PVC paper (30° steps in three
    planes: 34 versions of each volume).
    """

    def __init__(self, planes: Sequence[str] = ("xy",), step_deg: float | None = None,
                 range_deg: tuple[float, float] = (-180.0, 180.0), keys: Sequence[str] | None = None,
                 mask_keys: Sequence[str] = MASK_KEYS, one_plane: bool = False):
        self.planes = _check_planes(planes, "RandomRotate")
        if one_plane and step_deg is None:
            raise InputError("RandomRotate: one_plane=True needs step_deg")
        self.one_plane = bool(one_plane)
        if step_deg is not None:
            step = float(step_deg)
            n = 360.0 / step if step > 0 else 0.0
            if not (step > 0 and abs(n - round(n)) < 1e-9):
                raise InputError(f"RandomRotate: step_deg must divide 360, found {step_deg!r}")
        try:
            lo, hi = (float(v) for v in range_deg)
        except (TypeError, ValueError):
            raise InputError(f"RandomRotate: range_deg must be (low, high), found {range_deg!r}") from None
        if not lo <= hi:
            raise InputError(f"RandomRotate: range_deg needs low <= high, found {range_deg!r}")
        self.step_deg = None if step_deg is None else float(step_deg)
        self.range_deg = (lo, hi)
        self.keys = keys_arg(keys)
        self.mask_keys = list(mask_keys)

    def draw(self, sample, generator):
        g = need_generator(generator, "RandomRotate")
        angles: dict[str, Any] = {}
        if self.one_plane:
            steps = int(round(360.0 / self.step_deg)) - 1
            k = uniform_int(g, 0, len(self.planes) * steps)
            if k:
                angles[self.planes[(k - 1) // steps]] = self.step_deg * (1 + (k - 1) % steps)
            else:  # the identity, as a zero angle in the first plane
                angles[self.planes[0]] = 0.0
            return Rotate(angles, self.keys, self.mask_keys)
        for p in self.planes:
            if self.step_deg is not None:
                angles[p] = self.step_deg * uniform_int(g, 0, int(round(360.0 / self.step_deg)) - 1)
            else:
                angles[p] = uniform(g, *self.range_deg)
        return Rotate(angles, self.keys, self.mask_keys)


class AffineResample(Deterministic):
    """Resample ``key`` ``[C, H, W]`` at ``M·p + o`` (row, column pixel coordinates; bilinear,
    zero outside), the same map for every channel: a registration found once, replayable."""

    name = "affine_resample"

    def __init__(self, key: str, matrix: Sequence[Sequence[float]], offset: Sequence[float]):
        m = [[float(v) for v in row] for row in matrix]
        if len(m) != 2 or any(len(r) != 2 for r in m) or len(offset) != 2:
            raise InputError(f"AffineResample: expected a 2×2 matrix and 2 offsets, found {matrix!r}, {offset!r}")
        self.key, self.matrix, self.offset = key, m, [float(v) for v in offset]

    def apply(self, sample):
        import numpy as np
        from scipy import ndimage

        out = dict(sample)
        (k,) = selected(sample, [self.key], "AffineResample")
        x = sample[k]
        if x.dim() != 3:
            raise InputError(f"AffineResample: {k!r} has shape {tuple(x.shape)}; expected [C, H, W]")
        arr = x.detach().cpu().double().numpy()
        res = np.stack([ndimage.affine_transform(c, np.asarray(self.matrix), offset=np.asarray(self.offset), order=1,
                                                 mode="constant", cval=0.0) for c in arr])
        out[k] = torch.as_tensor(res).to(device=x.device, dtype=x.dtype)
        return out

    def _args(self):
        return {"key": self.key, "matrix": self.matrix, "offset": self.offset}


class RegisterToReference(Transform):
    """Register ``key`` to ``reference`` (their first channels; SimpleITK, :func:`spectdl.data.planar_pairs.
    register_patch`) and draw the :class:`AffineResample` that applies the found map to every channel
    of ``key``: the patch-focused registration of a fast scan's training patch to its 1x patch."""

    def __init__(self, key: str = "input", reference: str = "target", transform: str = "rigid"):
        self.key, self.reference, self.transform = key, reference, transform

    def draw(self, sample, generator=None) -> AffineResample:
        from spectdl.data.planar_pairs import register_patch

        k, r = selected(sample, [self.key, self.reference], "RegisterToReference")
        if sample[k].dim() != 3 or sample[r].dim() != 3:
            raise InputError("RegisterToReference: expected 2-D samples [C, H, W]")
        _, rec = register_patch(sample[k][0], sample[r][0], transform=self.transform)
        return AffineResample(k, rec["matrix_rc"], rec["offset_rc"])
