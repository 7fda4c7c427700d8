"""Parallel-hole SPECT projector with attenuation and distance-dependent resolution.

Geometry (see also :mod:`spectdl.geometry`)
-------------------------------------------
* Object ``x``: ``[B, C, nx, ny]`` (2-D) or ``[B, C, nx, ny, nz]`` (3-D) on a :class:`VoxelGrid`
  with ``nx == ny`` and square transaxial voxels; voxel ``i`` has its centre at
  ``(i − (n−1)/2)·size`` mm.
* Detector angle θ (degrees) is measured counter-clockwise from +y: at θ = 0 the detector is at +y
  and looks down −y. A point ``(x, y)`` projects to the radial coordinate
  ``s = x·cos θ + y·sin θ``; its depth towards the detector is ``d = −x·sin θ + y·cos θ`` and its
  distance to the collimator face is ``b = R(θ) − d`` (clamped at 0).
* Projections ``y``: ``[B, C, n_angles, n_radial]`` (2-D) or ``[B, C, n_angles, n_radial, n_axial]``
  (3-D). Radial pixel ``r`` has its centre at ``(r − (n−1)/2)·dx``, so ``n_radial = nx`` with the
  transaxial voxel size; axial pixel ``k`` is slice ``k``. Views follow ``orbit.angles_deg``.

Model
-----
``y_θ(s, z) = Σ_d G_{σ(b)} ∗ [ x_θ(s, d, z) · exp(−∫_d^{R} μ_θ(s, d′, z) dd′) ]``

where ``x_θ`` and ``μ_θ`` are the object and attenuation map rotated into the detector frame
(bilinear push, :mod:`spectdl.physics.rotation`), the line integral uses the voxels between a
plane and the detector plus half of its own voxel, and ``G_σ`` is the collimator-detector
response of :class:`Collimator` (:mod:`spectdl.physics.psf`). Activity outside the circle
inscribed in the transaxial grid is not seen. Every step is an explicit linear map with an
explicit transpose, so ``A_adjoint`` is the exact adjoint of ``A`` (not an approximate
back-projector).
"""

from __future__ import annotations

import contextlib
import math
from typing import NamedTuple, Sequence

import numpy as np
import torch
from torch import nn

from spectdl.errors import GeometryError, InputError
from spectdl.geometry import Collimator, Orbit, VoxelGrid
from spectdl.physics import _compiled
from spectdl.physics.psf import _RESIDUAL_HALF_WIDTH as _RES_CENTRE
from spectdl.physics.psf import DepthBlur
from spectdl.physics.rotation import RotationBank

# A mu_map above this (cm⁻¹) is almost certainly in HU or in the wrong unit: lead at 140 keV is 27,
# but no patient tissue exceeds ~0.6 at SPECT energies.
_MAX_PLAUSIBLE_MU_PER_CM = 3.0
_OVER_BUDGET = ("half", "recompute")


class AdjointnessResult(NamedTuple):
    """``⟨A x, y⟩`` and ``⟨x, Aᵀ y⟩`` for random ``x, y``, and their relative difference."""

    ax_y: float
    x_aty: float
    relative_error: float



def as_float_input(t: torch.Tensor, name: str) -> torch.Tensor:
    """``t`` in a dtype the sparse kernels take: integer counts become float32; float32 and float64
    pass; half, bfloat16, bool and complex are refused with an InputError naming ``name``."""
    if t.dtype in (torch.float32, torch.float64):
        return t
    if t.dtype == torch.bool or t.dtype.is_complex or t.dtype.is_floating_point:
        raise InputError(
            f"{name}: dtype {t.dtype} is not supported (no sparse kernel); expected float32 or float64 "
            f"(or integer counts, cast to float32) - convert with .float() or .double()"
        )
    return t.to(torch.float32)


def _workspace(like: torch.Tensor):
    """``buf(name, shape)``: a view of a named buffer of ``like``'s dtype and device, reused (and
    grown) across calls; fresh large allocations cost a page fault per 4 kB."""
    work: dict[str, torch.Tensor] = {}

    def buf(name: str, shape: tuple) -> torch.Tensor:
        size = math.prod(shape)
        if name not in work or work[name].numel() < size:
            work[name] = like.new_empty(size)
        return work[name][:size].view(shape)

    return buf


def forward_loop() -> str:
    """Which inner loops :class:`SpectProjector` runs on the CPU by default: ``"numba <version>"``
    (compiled, :mod:`._compiled`) or ``"torch"`` (numba missing, ``SPECTDL_NO_NUMBA=1``, or
    ``SpectProjector.compiled_loop`` off). The two agree to float rounding, not bit for bit, so
    simulation manifests record it."""
    if SpectProjector.compiled_loop and _compiled.available():
        import numba

        return f"numba {numba.__version__}"
    return "torch"


class SpectProjector(nn.Module):
    """The SPECT system matrix ``A`` as an ``nn.Module`` (see the module docstring for conventions).

    Args:
        grid: object grid; 2-D ``(n, n)`` or 3-D ``(n, n, nz)``.
        orbit: detector angles and per-view radii.
        collimator: collimator-detector response; ``None`` for ideal line integrals.
        mu_map: ``[B_mu, 1, *grid.shape]`` attenuation in cm⁻¹ at the photon energy, with
            ``B_mu`` 1 (shared) or equal to the batch size (one map per sample); ``None`` for no
            attenuation.
        memory_budget_mb: working memory per chunk of views; larger is faster.
        cache_attenuation: keep the attenuation factors of every view once computed (OSEM calls
            the projector many times with one ``mu_map``); costs ``n_angles·n³`` floats per μ map.
        attenuation_cache_mb: the most memory the attenuation cache may take. A cache that would
            exceed it is kept as ``over_budget`` says (see :meth:`attenuation_storage`).
        over_budget: ``"half"`` stores the factors in float16 (half the memory; they are upcast
            where used, and forward and back-projection use the same rounded factors, so the pair
            stays matched), falling back to ``"recompute"`` when even that exceeds the budget;
            ``"recompute"`` computes them again for every view of every call (no cache memory).
        check_input: validate tensors on every call (NaN, negative activity, shapes).
    """

    #: Take the fused forward path where it applies (no autograd, no cached factors, three-tap
    #: increments); :class:`~spectdl.physics.reference.ReferenceProjector` turns it off.
    fused_forward = True
    #: Run the inner loops compiled (numba, :mod:`._compiled`) where they apply: the fused 2-D
    #: path's depth recursion, the per-view depth blur and the sparse rotations; ``False`` keeps
    #: the torch operations (the same operator, 1.6–4.9× slower here).
    compiled_loop = True

    def __init__(
        self,
        grid: VoxelGrid,
        orbit: Orbit,
        collimator: Collimator | None = None,
        mu_map: torch.Tensor | None = None,
        *,
        memory_budget_mb: float = 256.0,
        cache_attenuation: bool = True,
        attenuation_cache_mb: float = 2048.0,
        over_budget: str = "half",
        check_input: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(grid, VoxelGrid):
            raise GeometryError(f"grid: expected a VoxelGrid, found {type(grid).__name__}")
        if not isinstance(orbit, Orbit):
            raise GeometryError(f"orbit: expected an Orbit, found {type(orbit).__name__}")
        nx, ny = grid.shape[:2]
        dx, dy = grid.voxel_size_mm[:2]
        if nx != ny or not math.isclose(dx, dy, rel_tol=1e-9):
            raise GeometryError(
                f"grid: the transaxial plane must be square with square voxels, found shape "
                f"{grid.shape[:2]} and voxel_size_mm {grid.voxel_size_mm[:2]}"
            )
        if collimator is not None and not isinstance(collimator, Collimator):
            raise GeometryError(f"collimator: expected a Collimator or None, found {type(collimator).__name__}")
        self.grid = grid
        self.orbit = orbit
        self.collimator = collimator
        self.memory_budget_mb = float(memory_budget_mb)
        self.cache_attenuation = bool(cache_attenuation)
        if not (isinstance(attenuation_cache_mb, (int, float)) and attenuation_cache_mb >= 0):
            raise InputError(f"attenuation_cache_mb: {attenuation_cache_mb!r}; expected a size in MB >= 0")
        if over_budget not in _OVER_BUDGET:
            raise InputError(f"over_budget: {over_budget!r}; expected one of {', '.join(map(repr, _OVER_BUDGET))}")
        self.attenuation_cache_mb = float(attenuation_cache_mb)
        self.over_budget = over_budget
        self.check_input = bool(check_input)
        self.fused_chunk_mb = 32.0  # rotated planes of one chunk of views in the fused forward path
        self.fused_columns = 16  # images per sparse product in the fused forward path
        self.compiled_columns = 32  # images per group in its compiled 2-D loop (16: 0.85×, 64: 0.93×)
        self._rot = RotationBank.shared(nx, orbit.angles_deg)
        self._blur_cache: dict[tuple, DepthBlur] = {}
        self._turn_cache: dict[tuple, torch.Tensor] = {}
        self._att_cache: dict[int, torch.Tensor] = {}  # per view, for one device and dtype
        self._att_key: tuple | None = None
        self.mu_map: torch.Tensor | None = None
        self.set_mu_map(mu_map)

    # ---------------------------------------------------------------- geometry helpers
    @property
    def n_angles(self) -> int:
        return self.orbit.n_angles

    @property
    def is_3d(self) -> bool:
        return self.grid.ndim == 3

    def projection_shape(self, batch: int = 1, channels: int = 1, n_views: int | None = None) -> tuple:
        n = self.grid.shape[0]
        v = self.n_angles if n_views is None else n_views
        return (batch, channels, v, n) + ((self.grid.shape[2],) if self.is_3d else ())

    def set_mu_map(self, mu_map: torch.Tensor | None) -> None:
        """Replace the attenuation map (``[B_mu, 1, *grid.shape]``, cm⁻¹) and drop cached factors."""
        self._att_cache = {}
        if mu_map is None:
            self.mu_map = None
            return
        if not isinstance(mu_map, torch.Tensor):
            raise InputError(f"mu_map: expected a torch.Tensor, found {type(mu_map).__name__}")
        expected = (1,) + self.grid.shape
        if mu_map.dim() != self.grid.ndim + 2 or tuple(mu_map.shape[1:]) != expected:
            raise InputError(
                f"mu_map: shape {tuple(mu_map.shape)} does not match the grid; expected "
                f"[B_mu, 1, {', '.join(map(str, self.grid.shape))}]"
            )
        if not torch.isfinite(mu_map).all():
            raise InputError("mu_map: contains NaN or infinite values; expected finite cm⁻¹ values")
        lo, hi = float(mu_map.min()), float(mu_map.max())
        if lo < 0:
            raise InputError(f"mu_map: minimum {lo:.4g} cm⁻¹ is negative; expected values >= 0")
        if hi > _MAX_PLAUSIBLE_MU_PER_CM:
            raise InputError(
                f"mu_map: maximum {hi:.4g} exceeds {_MAX_PLAUSIBLE_MU_PER_CM} cm⁻¹; expected linear "
                f"attenuation in cm⁻¹ (convert HU with spectdl.io.ct_to_mu)"
            )
        self.mu_map = mu_map

    def _subset_index(self, subset) -> list[int]:
        if subset is None:
            return list(range(self.n_angles))
        if isinstance(subset, torch.Tensor):
            if subset.dtype.is_floating_point or subset.dtype.is_complex or subset.dtype == torch.bool:
                raise InputError(f"subset: tensor of dtype {subset.dtype}; expected integer view indices")
            raw = subset.reshape(-1).tolist()
        else:
            raw = list(subset)
        bad_type = [i for i in raw if isinstance(i, bool) or not isinstance(i, (int, np.integer))]
        if bad_type:
            raise InputError(f"subset: non-integer view indices {bad_type[:5]}; expected integers 0..{self.n_angles - 1}")
        idx = [int(i) for i in raw]
        if not idx:
            raise InputError("subset: is empty; expected at least one view index")
        bad = [i for i in idx if not 0 <= i < self.n_angles]
        if bad:
            raise InputError(f"subset: view indices {bad[:5]} out of range; expected 0..{self.n_angles - 1}")
        return idx

    def _blur(self, device, dtype) -> DepthBlur | None:
        if self.collimator is None:
            return None
        key = (torch.device(device), dtype)
        if key not in self._blur_cache:
            n = self.grid.shape[0]
            dx = self.grid.voxel_size_mm[0]
            depth_mm = (np.arange(n) - (n - 1) / 2.0) * dx  # far (−) → near (+)
            radius = np.asarray(self.orbit.radius_mm, dtype=np.float64)[:, None]
            b = np.clip(radius - depth_mm[None, :], 0.0, None)
            var_mm2 = np.asarray(self.collimator.sigma_mm(b), dtype=np.float64) ** 2
            var_z = var_mm2 / self.grid.voxel_size_mm[2] ** 2 if self.is_3d else None
            self._blur_cache[key] = DepthBlur.from_variances(var_mm2 / dx**2, var_z, dtype=dtype, device=device)
        return self._blur_cache[key]

    @staticmethod
    def _as_float(t: torch.Tensor, name: str) -> torch.Tensor:
        return as_float_input(t, name)

    @staticmethod
    def _check_batch(t: torch.Tensor, name: str) -> None:
        if t.shape[0] == 0 or t.shape[1] == 0:
            raise InputError(f"{name}: shape {tuple(t.shape)} has an empty batch or channel axis; expected B >= 1 and C >= 1")

    def _check_x(self, x: torch.Tensor) -> torch.Tensor:
        expected = self.grid.shape
        if not isinstance(x, torch.Tensor):
            raise InputError(f"x: expected a torch.Tensor, found {type(x).__name__}")
        x = self._as_float(x, "x")
        if x.dim() != self.grid.ndim + 2 or tuple(x.shape[2:]) != expected:
            raise InputError(
                f"x: shape {tuple(x.shape)} does not match the grid; expected "
                f"[B, C, {', '.join(map(str, expected))}]"
            )
        self._check_batch(x, "x")
        if self.check_input:
            if not torch.isfinite(x).all():
                raise InputError("x: activity contains NaN or infinite values")
            if bool((x < 0).any()):
                raise InputError(f"x: activity has negative values (min {float(x.min()):.4g}); expected >= 0")
        self._check_mu_batch(x.shape[0])
        return x

    def _check_mu_batch(self, batch: int) -> None:
        if self.mu_map is not None and self.mu_map.shape[0] not in (1, batch):
            raise InputError(
                f"mu_map: batch {self.mu_map.shape[0]} does not match the input batch {batch}; "
                f"expected 1 or {batch}"
            )

    def _check_y(self, y: torch.Tensor, n_views: int) -> torch.Tensor:
        if not isinstance(y, torch.Tensor):
            raise InputError(f"y: expected a torch.Tensor, found {type(y).__name__}")
        y = self._as_float(y, "y")
        expected = self.projection_shape(n_views=n_views)[2:]
        if y.dim() != len(expected) + 2 or tuple(y.shape[2:]) != expected:
            raise InputError(
                f"y: shape {tuple(y.shape)} does not match the projector; expected "
                f"[B, C, {', '.join(map(str, expected))}]"
            )
        self._check_batch(y, "y")
        if self.check_input and not torch.isfinite(y).all():
            raise InputError("y: projections contain NaN or infinite values")
        self._check_mu_batch(y.shape[0])
        return y

    # ---------------------------------------------------------------- attenuation
    def attenuation_cache_bytes(self, dtype: torch.dtype = torch.float32) -> int:
        """Bytes the attenuation factors of every view take in ``dtype``: ``n_angles · B_mu · n² · n_z``
        elements (0 without a μ map)."""
        if self.mu_map is None:
            return 0
        itemsize = torch.empty((), dtype=dtype).element_size()
        return self.n_angles * self.mu_map.shape[0] * math.prod(self.grid.shape) * itemsize

    def attenuation_storage(self, dtype: torch.dtype = torch.float32) -> str:
        """How the attenuation factors of a ``dtype`` computation are kept: ``"none"`` (no μ map),
        ``"full"`` (cached in ``dtype``), ``"half"`` (cached in float16) or ``"recompute"``
        (not cached: ``cache_attenuation`` is off, or the cache would exceed
        ``attenuation_cache_mb``)."""
        if self.mu_map is None:
            return "none"
        if not self.cache_attenuation:
            return "recompute"
        budget = self.attenuation_cache_mb * 2**20
        if self.attenuation_cache_bytes(dtype) <= budget:
            return "full"
        if self.over_budget == "half" and self.attenuation_cache_bytes(torch.float16) <= budget:
            return "half"
        return "recompute"

    def _attenuation(self, view: int, device, dtype) -> torch.Tensor | None:
        """``[D, B_mu, S, Z]`` survival probabilities for view ``view`` (far → near planes) in
        ``dtype`` (rounded to float16 first where the cache is kept in half precision)."""
        storage = self.attenuation_storage(dtype)
        if storage == "none":
            return None
        key = (torch.device(device), dtype)
        if key != self._att_key:  # one device and dtype at a time, so the budget holds
            self._att_cache, self._att_key = {}, key
        att = self._att_cache.get(view)
        if att is None:
            att = self._attenuation_factors(view, device, dtype)
            if storage == "half":
                att = att.to(torch.float16)
            if storage != "recompute":
                self._att_cache[view] = att
        # Upcast once: a float32 × float16 product is ~3× slower here than the cast and a float32 one.
        return att.to(dtype)

    @staticmethod
    def _columns(t5: torch.Tensor) -> torch.Tensor:
        """``[B, C, n, n, Z]`` as the ``[n·n, B·C·Z]`` right-hand side of the sparse rotations."""
        n = t5.shape[2]
        return t5.permute(2, 3, 0, 1, 4).reshape(n * n, -1)

    def _mu5(self, device, dtype) -> torch.Tensor | None:
        """The μ map as ``[B_mu, 1, n, n, Z]`` on ``device`` in ``dtype`` (``None`` without one)."""
        if self.mu_map is None:
            return None
        mu = self.mu_map.to(device=device, dtype=dtype)
        return mu if self.is_3d else mu.unsqueeze(-1)

    def _rotated_mu(self, view: int, device, dtype) -> torch.Tensor:
        """The μ map rotated into view ``view``'s frame: ``[D, S, B_mu, Z]``, contiguous."""
        mu5 = self._mu5(device, dtype)
        n = self.grid.shape[0]
        fwd, _ = self._rot.matrices(device, dtype)
        return self._product(fwd[view], self._columns(mu5)).view(n, n, mu5.shape[0], mu5.shape[-1])

    def _attenuation_factors(self, view: int, device, dtype) -> torch.Tensor:
        """Uncached ``[D, B_mu, S, Z]`` survival probabilities of view ``view``."""
        r4 = self._rotated_mu(view, device, dtype)
        n, _, bm, nz = r4.shape
        rot = r4.view(n, -1)  # [D, S·Bm·Z]
        # Path from each plane to the detector: planes nearer than it, plus half of its own voxel,
        # Σ_{j' > j} μ_j' + μ_j / 2 = T − C_j + μ_j / 2 with C the inclusive sum from the far side.
        # torch.cumsum over a leading axis is a scalar loop (~5 ns per element here); one vector add
        # per plane is several times faster.
        cum = rot.clone()
        for j in range(1, n):
            cum[j].add_(cum[j - 1])
        att = cum.sub_(rot, alpha=0.5).sub_(cum[-1] + 0.5 * rot[-1]).mul_(self.grid.voxel_size_mm[0] / 10.0).exp_()
        return att.view(n, n, bm, nz).permute(0, 2, 1, 3)  # [D, Bm, S, Z]

    # ---------------------------------------------------------------- the operator
    @staticmethod
    def _split(idx: list[int], per_view_bytes: int, budget_mb: float) -> list[list[int]]:
        """``idx`` in consecutive chunks of as many views as fit ``budget_mb`` (at least one)."""
        size = max(1, int(budget_mb * 2**20 // per_view_bytes))
        return [idx[i : i + size] for i in range(0, len(idx), size)]

    def _chunks(self, idx: list[int], batch_channels: int, itemsize: int) -> list[list[int]]:
        n = self.grid.shape[0]
        nz = self.grid.shape[2] if self.is_3d else 1
        per_view = n * n * nz * batch_channels * itemsize * 3  # rotated planes, their product, its blur
        return self._split(idx, per_view, self.memory_budget_mb)

    @contextlib.contextmanager
    def uncached(self):
        """Within the block, forward projections neither use nor fill the attenuation cache (so they
        take the fused path): data simulated once and reconstructed later, or in the same run with a
        caching projector, then get the same bytes."""
        saved = self.cache_attenuation
        self.cache_attenuation = False
        try:
            yield self
        finally:
            self.cache_attenuation = saved

    def _product(self, matrix: torch.Tensor, src: torch.Tensor, out: torch.Tensor | None = None,
                 accumulate: bool = False) -> torch.Tensor:
        """``matrix @ src`` for a CSR rotation ``matrix`` and ``src [n², columns]``, into ``out`` when
        given (``out += …`` with ``accumulate``): compiled (:func:`._compiled.rotate`, the same bytes
        as torch's product) on the CPU without autograd, else torch's CSR product."""
        grad = torch.is_grad_enabled() and (src.requires_grad or (out is not None and out.requires_grad))
        if self.compiled_loop and not grad and _compiled.takes(src) and (out is None or out.is_contiguous()):
            if out is None:
                out, accumulate = src.new_empty((matrix.shape[0], src.shape[1])), False
            _compiled.rotate(matrix, src.contiguous(), out, accumulate=accumulate)
            return out
        r = torch.sparse.mm(matrix, src)
        if out is None:
            return r
        return out.add_(r) if accumulate else out.copy_(r)

    def _quarter_turn(self, view: int) -> tuple[float, int]:
        """View ``view``'s angle as ``r + 90°·q``: ``(r, q)`` with ``0 ≤ r < 90`` and ``q`` in 0..3."""
        a = float(self.orbit.angles_deg[view])
        r = round(a % 90.0, 6) % 90.0
        return r, int(round((a - r) / 90.0)) % 4

    def _quarter_turn_order(self, idx: list[int]) -> list[int]:
        """The positions of ``idx`` reordered so that views a multiple of 90° apart are adjacent
        (and so fall in one chunk, where :meth:`_rotate_into` turns one rotation into the others)."""
        groups: dict[float, list[int]] = {}
        for p, v in enumerate(idx):
            groups.setdefault(self._quarter_turn(v)[0], []).append(p)
        return [p for members in groups.values() for p in members]

    def _rotate_into(self, dst: torch.Tensor, columns: torch.Tensor, chunk: list[int], fwd: list) -> None:
        """``dst[k] = R_{chunk[k]} · columns`` as ``[D, S, cols]`` for every view of ``chunk``.

        A view a multiple of 90° from one already rotated in the chunk is a permutation of it: the
        grid is square and centred, so by the rotation's definition (:mod:`~spectdl.physics.rotation`)
        ``R_{θ+90°}[d, s] = R_θ[s, n−1−d]``. The bilinear weights are then the same numbers up to the
        rounding of ``cos`` and ``sin`` (a relative 1e-16), and one sparse product does four views.
        """
        n = self.grid.shape[0]
        seen: dict[float, tuple[int, int]] = {}
        for k, v in enumerate(chunk):
            r, q = self._quarter_turn(v)
            if r not in seen:
                self._product(fwd[v], columns, out=dst[k].view(n * n, -1))
                seen[r] = (k, q)
                continue
            k0, q0 = seen[r]
            turns = (q - q0) % 4
            rows = self._turn_rows(turns, dst.device)
            torch.index_select(dst[k0].view(n * n, -1), 0, rows, out=dst[k].view(n * n, -1))

    def _turn_rows(self, turns: int, device) -> torch.Tensor:
        """For ``turns`` quarter turns: the row ``[d·n + s]`` of a rotated image that each row of
        the image ``turns`` × 90° further on comes from (``[n²]`` int64, cached)."""
        key = (turns, torch.device(device))
        rows = self._turn_cache.get(key)
        if rows is None:
            n = self.grid.shape[0]
            idx = torch.arange(n * n, device=device).view(n, n)  # source rows, [d, s]
            for _ in range(turns):  # one quarter turn: new[d, s] = old[s, n−1−d]
                idx = idx.flip(1).transpose(0, 1)
            rows = self._turn_cache[key] = idx.reshape(-1).contiguous()
        return rows

    def _A_fused(self, x5: torch.Tensor, idx: list[int], blur: DepthBlur | None) -> torch.Tensor:
        """``A x`` without autograd and without cached factors: ``[V, B, C, S, Z]``.

        The same operator as the per-view path, computed depth plane by depth plane for all views
        of a chunk at once: samples go through in groups small enough that one view's rotated
        planes stay in cache (about 16 columns of the sparse product), and the attenuation sum,
        the survival factor, plane ``j``'s residual blur and the recursion's step are one short
        sequence of vector operations on ``[Vc, S, columns]``. The per-view path's attenuation and
        blur each made a full pass over every rotated plane; this makes one. Views are taken in
        sets a multiple of 90° apart, which share one sparse product (:meth:`_rotate_into`).
        """
        b, c, n, _, nz = x5.shape
        device, dtype = x5.device, x5.dtype
        fwd, _ = self._rot.matrices(device, dtype)
        mu5 = self._mu5(device, dtype)
        shared_mu = mu5 is not None and mu5.shape[0] == 1
        group = max(1, self.fused_columns // (c * nz))
        dx_cm = self.grid.voxel_size_mm[0] / 10.0
        out = x5.new_empty((len(idx), b, c, n, nz))
        buf = _workspace(x5)
        coefficients: dict[tuple[int, ...], tuple] = {}  # per chunk of views, shared by the groups
        order = self._quarter_turn_order(idx)

        for b0 in range(0, b, group):
            xb = x5[b0 : b0 + group]
            g = xb.shape[0]
            ca = g * c * nz
            fa = self._columns(xb)
            fm = None if mu5 is None else self._columns(mu5 if shared_mu else mu5[b0 : b0 + g])
            columns = ca + (0 if fm is None else fm.shape[1])
            for where in self._split(order, n * n * columns * x5.element_size(), self.fused_chunk_mb):
                chunk = [idx[p] for p in where]
                vc = len(chunk)
                key = tuple(chunk)
                if key not in coefficients:
                    sel = torch.as_tensor(chunk, device=device)
                    coefficients[key] = ((None, None, None, None) if blur is None else
                                         blur.step_coefficients(sel) + blur.residual_coefficients(sel))
                steps_s, steps_z, res_s, res_z = coefficients[key]
                rot_a = buf("rot_a", (vc, n, n, ca))  # [Vc, D, S, (g, C, Z)]
                rot_m = None if fm is None else buf("rot_m", (vc, n, n, fm.shape[1]))
                # One operand at a time, so that it stays in cache across the views.
                self._rotate_into(rot_a, fa, chunk, fwd)
                if rot_m is not None:
                    self._rotate_into(rot_m, fm, chunk, fwd)
                    total = torch.sum(rot_m, 1, out=buf("total", (vc, n, fm.shape[1])))  # [Vc, S, (gm, Z)]
                    cum = buf("cum", total.shape).zero_()
                    surv = buf("surv", total.shape)
                shape4 = (vc, n, g * c, nz)
                acc = buf("acc", shape4)
                tmp = buf("tmp", shape4)
                if blur is not None:
                    lit = buf("lit", shape4)  # plane j attenuated, then its residual blur
                    res = buf("res", shape4)
                    res2 = buf("res2", shape4) if res_z is not None else None
                for j in range(n):
                    plane = rot_a[:, j].view(vc, n, g, c, nz)
                    if rot_m is not None:
                        mj = rot_m[:, j]
                        # exp(−dx·(T − C_{j−1} − μ_j/2)): the survival from plane j to the detector.
                        torch.add(cum, mj, alpha=0.5, out=surv)
                        cum.add_(mj)
                        surv.sub_(total).mul_(dx_cm).exp_()
                        factor = surv.view(vc, n, -1, 1, nz)
                    if blur is None:
                        if j == 0:
                            if rot_m is None:
                                acc.view(vc, n, g, c, nz).copy_(plane)
                            else:
                                torch.mul(plane, factor, out=acc.view(vc, n, g, c, nz))
                        elif rot_m is None:
                            acc.view(vc, n, g, c, nz).add_(plane)
                        else:
                            acc.view(vc, n, g, c, nz).addcmul_(plane, factor)
                        continue
                    if rot_m is None:
                        src = plane.reshape(shape4)
                    else:
                        src = torch.mul(plane, factor, out=lit.view(vc, n, g, c, nz)).view(shape4)
                    r = blur.symmetric_into(res, src, res_s[j], 1)
                    if res_z is not None:
                        r = blur.symmetric_into(res2, r, res_z[j], 3)
                    if j == 0:
                        acc.copy_(r)
                        continue
                    new = acc
                    if steps_s[j - 1] is not None:
                        new = blur.symmetric_into(tmp, new, steps_s[j - 1], 1)
                        if steps_z is not None:
                            new = blur.symmetric_into(acc if new is tmp else tmp, new, steps_z[j - 1], 3)
                    if new is not acc:
                        acc, tmp = tmp, acc
                    acc.add_(r)
                img = acc.permute(0, 2, 1, 3)  # [Vc, (g, C), S, Z]
                if blur is not None:
                    sel = torch.as_tensor(chunk, device=device)
                    img = blur.select(sel, g * c)._base(img.reshape(vc * g * c, n, nz))
                out[:, b0 : b0 + g].index_copy_(0, torch.as_tensor(where, device=device), img.reshape(vc, g, c, n, nz))
        return out

    def _compiled_applies(self, x5: torch.Tensor, blur: DepthBlur | None) -> bool:
        """Whether :meth:`_A_compiled` can run: 2-D, on the CPU, float32/float64, with a collimator
        blur, and one μ map per sample (one channel) or one for all."""
        mu = self.mu_map
        return (self.compiled_loop and not self.is_3d and blur is not None and _compiled.takes(x5)
                and (mu is None or mu.shape[0] == 1 or x5.shape[1] == 1))

    def _A_compiled(self, x5: torch.Tensor, idx: list[int], blur: DepthBlur) -> torch.Tensor:
        """:meth:`_A_fused` for 2-D projections with the depth recursion compiled (:mod:`._compiled`):
        ``[V, B, C, S, 1]``.

        Per group of samples (``compiled_columns`` columns) and chunk of base views (one per set of
        views a multiple of 90° apart, :meth:`_rotate_into`): the activity and ``−Δx/2 · μ`` are
        rotated into the base views (a compiled CSR product; rotation is linear, so scaling first is
        the same operator), ``h = exp(−Δx·μ/2)`` is one vectorised torch call there, and the
        compiled loop runs every view of the chunk from them, reading a turned view's rows through
        :meth:`_turn_rows`. Then the final base blur in torch, as in :meth:`_A_fused`.
        """
        b, c, n, _, nz = x5.shape
        device, dtype = x5.device, x5.dtype
        fwd, _ = self._rot.matrices(device, dtype)
        mu5 = self._mu5(device, dtype)
        shared_mu = mu5 is not None and mu5.shape[0] == 1
        group = max(1, self.compiled_columns // c)
        dx_cm = self.grid.voxel_size_mm[0] / 10.0
        out = x5.new_empty((len(idx), b, c, n, nz))
        bases: dict[float, tuple[int, int, list[int]]] = {}  # r → (base view, its q, positions)
        turn = [0] * len(idx)
        for p, v in enumerate(idx):
            r, q = self._quarter_turn(v)
            if r not in bases:
                bases[r] = (v, q, [])
            turn[p] = (q - bases[r][1]) % 4
            bases[r][2].append(p)
        rows = torch.stack([self._turn_rows(t, device) for t in range(4)])
        sel_all = torch.as_tensor(idx)
        res_all = blur.res_s.index_select(0, sel_all)[..., _RES_CENTRE:]  # (c0, c1, c2) per view and plane
        step_all = blur.step_s.index_select(0, sel_all)[..., 1:]  # (middle, side)
        moves = torch.as_tensor(blur.moves, dtype=torch.bool)
        buf = _workspace(x5)
        base_list = list(bases.values())
        for b0 in range(0, b, group):
            xb = x5[b0 : b0 + group]
            g = xb.shape[0]
            ca = g * c
            fa = self._columns(xb).contiguous()
            fm = fa[:, :0]
            if mu5 is not None:  # scaled by −Δx/2 before the rotation, which is linear
                fm = self._columns(mu5 if shared_mu else mu5[b0 : b0 + g]).mul(-0.5 * dx_cm).contiguous()
            cm = max(fm.shape[1], 1)
            per_base = n * n * (ca + cm) * x5.element_size()
            for chunk in self._split(list(range(len(base_list))), per_base, self.fused_chunk_mb):
                rot_a = buf("rot_a", (len(chunk), n * n, ca))
                h = buf("h", (len(chunk), n * n, cm))
                for k, bi in enumerate(chunk):
                    _compiled.rotate(fwd[base_list[bi][0]], fa, rot_a[k], fm, h[k, :, : fm.shape[1]])
                if fm.shape[1] == 0:
                    h.fill_(1.0)
                else:
                    h.exp_()
                where = [p for bi in chunk for p in base_list[bi][2]]
                local = [k for k, bi in enumerate(chunk) for _ in base_list[bi][2]]
                pos = torch.as_tensor(where)
                acc = buf("acc", (len(where), n, ca))
                _compiled.depth_loop(rot_a, h, torch.as_tensor(local), rows, torch.as_tensor([turn[p] for p in where]),
                                     res_all.index_select(0, pos).contiguous(),
                                     step_all.index_select(0, pos).contiguous(), moves, acc)
                img = acc.permute(0, 2, 1).reshape(len(where) * ca, n, nz)  # [(V, g, C), S, Z]
                img = blur.select(torch.as_tensor([idx[p] for p in where]), ca)._base(img)
                out[:, b0 : b0 + g].index_copy_(0, pos, img.reshape(len(where), g, c, n, nz))
        return out

    def A(self, x: torch.Tensor, subset: Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
        """Forward projection ``y = A x`` of ``x [B, C, *grid.shape]`` onto the views in ``subset``."""
        x = self._check_x(x)
        idx = self._subset_index(subset)
        x5 = x if self.is_3d else x.unsqueeze(-1)
        b, c, n, _, nz = x5.shape
        nb = b * c
        device, dtype = x.device, x.dtype
        fwd, _ = self._rot.matrices(device, dtype)
        blur = self._blur(device, dtype)
        flat = self._columns(x5)
        # Without autograd, views are written straight into one preallocated buffer per chunk.
        inplace = not (torch.is_grad_enabled() and (x.requires_grad or (self.mu_map is not None and self.mu_map.requires_grad)))
        if self.fused_forward and inplace and self.attenuation_storage(dtype) in ("none", "recompute") and (blur is None or blur.is_three_tap):
            if self._compiled_applies(x5, blur):
                y = self._A_compiled(x5, idx, blur).permute(1, 2, 0, 3, 4)
            else:
                y = self._A_fused(x5, idx, blur).permute(1, 2, 0, 3, 4)
            return y if self.is_3d else y[..., 0]
        out = []
        for chunk in self._chunks(idx, nb, x.element_size()):
            stack = x.new_empty((n, len(chunk) * nb, n, nz)) if inplace else None
            planes = []
            for k, v in enumerate(chunk):
                rot = self._product(fwd[v], flat).view(n, n, b, c, nz).permute(0, 2, 3, 1, 4)  # [D, B, C, S, Z]
                att = self._attenuation(v, device, dtype)
                att = None if att is None else att.unsqueeze(2)  # [D, Bm, 1, S, Z]
                if inplace:
                    dst = stack[:, k * nb : (k + 1) * nb].view(n, b, c, n, nz)
                    if att is None:
                        dst.copy_(rot)
                    else:
                        torch.mul(rot, att, out=dst)
                else:
                    planes.append((rot if att is None else rot * att).reshape(n, nb, n, nz))
            if not inplace:
                stack = torch.cat(planes, 1)  # [D, V·B·C, S, Z]
            if blur is None:
                img = stack.sum(0)
            else:
                sel = torch.as_tensor(chunk, device=device)
                chunk_blur = blur.select(sel, nb)
                chunk_blur.compiled = self.compiled_loop
                img = chunk_blur.forward(stack)
            out.append(img.reshape(len(chunk), b, c, n, nz))
        y = torch.cat(out, 0).permute(1, 2, 0, 3, 4)
        return y if self.is_3d else y[..., 0]

    def A_adjoint(self, y: torch.Tensor, subset: Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
        """Back-projection ``Aᵀ y`` of ``y [B, C, n_views, n_radial(, n_axial)]`` (views of ``subset``)."""
        idx = self._subset_index(subset)
        y = self._check_y(y, len(idx))
        y5 = y if self.is_3d else y.unsqueeze(-1)
        b, c, _, n, nz = y5.shape
        nb = b * c
        device, dtype = y.device, y.dtype
        _, adj = self._rot.matrices(device, dtype)
        blur = self._blur(device, dtype)
        acc = None
        pos = 0
        for chunk in self._chunks(idx, nb, y.element_size()):
            img = y5[:, :, pos : pos + len(chunk)].permute(2, 0, 1, 3, 4).reshape(len(chunk) * nb, n, nz)
            pos += len(chunk)
            if blur is None:
                planes = img.unsqueeze(0).expand(n, -1, -1, -1)
            else:
                sel = torch.as_tensor(chunk, device=device)
                chunk_blur = blur.select(sel, nb)
                chunk_blur.compiled = self.compiled_loop
                planes = chunk_blur.adjoint(img)  # [D, V·B·C, S, Z]
            for k, v in enumerate(chunk):
                p = planes[:, k * nb : (k + 1) * nb].reshape(n, b, c, n, nz)  # [D, B, C, S, Z]
                att = self._attenuation(v, device, dtype)
                if att is not None:
                    p = p * att.unsqueeze(2)  # [D, Bm, 1, S, Z]
                p = p.permute(0, 3, 1, 2, 4).reshape(n * n, nb * nz)
                if acc is None:
                    acc = self._product(adj[v], p)
                elif p.requires_grad or acc.requires_grad:
                    acc = acc + torch.sparse.mm(adj[v], p)
                else:
                    self._product(adj[v], p, out=acc, accumulate=True)
        x5 = acc.reshape(n, n, b, c, nz).permute(2, 3, 0, 1, 4)
        return x5 if self.is_3d else x5[..., 0]

    def forward(self, x: torch.Tensor, subset=None) -> torch.Tensor:
        return self.A(x, subset)

    def sensitivity(self, batch: int = 1, subset=None, device=None, dtype=torch.float32) -> torch.Tensor:
        """``Aᵀ 1``: the back-projection of a uniform projection set, ``[batch, 1, *grid.shape]``."""
        ones = torch.ones(self.projection_shape(batch, 1, len(self._subset_index(subset))), device=device, dtype=dtype)
        return self.A_adjoint(ones, subset)

    def adjointness_test(
        self, batch: int = 1, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64
    ) -> AdjointnessResult:
        """Compare ``⟨A x, y⟩`` with ``⟨x, Aᵀ y⟩`` for uniform random ``x ≥ 0`` and ``y ≥ 0``."""
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        batch = max(batch, 1 if self.mu_map is None else self.mu_map.shape[0])
        x = torch.rand((batch, 1) + self.grid.shape, generator=gen, dtype=dtype)
        y = torch.rand(self.projection_shape(batch, 1), generator=gen, dtype=dtype)
        device = self.mu_map.device if self.mu_map is not None else torch.device("cpu")
        x, y = x.to(device), y.to(device)
        lhs = float((self.A(x) * y).sum())
        rhs = float((x * self.A_adjoint(y)).sum())
        return AdjointnessResult(lhs, rhs, abs(lhs - rhs) / max(abs(lhs), abs(rhs), 1e-300))
