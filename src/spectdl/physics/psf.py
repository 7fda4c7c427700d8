"""Distance-dependent collimator-detector response (CDR) by exact incremental blurring.

The CDR of a parallel-hole collimator is, to a very good approximation, a Gaussian whose variance
grows with the distance ``b`` between the source plane and the collimator face:
``σ²(b) = (Collimator.fwhm_mm(b) / 2.3548)²``. The projection of a rotated, attenuated object
``p[j]`` (depth planes ordered from far, ``j = 0``, to near, ``j = D−1``) is

    y = Σ_j G_{V_j} ∗ p[j],    V_j = σ²(b_j) / pixel²   (variance in pixel² units),

with ``G_V`` the *pixel-integrated* Gaussian ``G_V[n] = Φ((n + ½)/σ) − Φ((n − ½)/σ)``, ``σ² = V``:
what a detector pixel records of a point source at its centre (variance ``V + 1/12``). Incremental
blurring (McCarthy & Miller 1991; Di Bella et al. 1996) evaluates the sum as one recursion,

    acc_0 = R_0 ∗ p[0];   acc_j = S^{k_j} ∗ acc_{j−1} + R_j ∗ p[j];   y = S^{m_{D−1}} ∗ acc_{D−1},

so that plane ``j`` receives ``S^{m_j} ∗ R_j``. Each plane's variance is split as
``V_j = m_j/3 + r_j``: ``m_j = max(0, ⌊3(V_j − ½)⌋)`` whole steps of the kernel
``S = [1/6, 2/3, 1/6]`` (variance exactly 1/3) and a residual ``R_j = G_{r_j}`` (five taps), with
``r_j`` in ``[½, ⅚)``, or ``r_j = V_j`` itself where ``V_j < ⅚``; ``k_j = m_{j−1} − m_j``.

Why these pieces: ``S`` is the one nonnegative three-tap kernel whose fourth cumulant is zero
(``t − 3t²`` at ``t = 1/3``), so the steps add variance without making the shape peakier, and
the residual carries the pixel integral. The total variance is exact, ``V_j + 1/12``, and the
shape is within about 1.5 % (relative L2) of ``G_{V_j}`` for σ from 0.3 to 3 pixels
(``tests/physics/test_psf.py``). Small steps of any other nonnegative kernel are leptokurtic: an
earlier recursion with one step of variance ``V_{j−1} − V_j`` per plane gave point responses
10–19 % too peaked at 4.4–4.8 mm voxels, where σ is under a pixel near the collimator.

All kernels are symmetric and zero-padded, so each step is a symmetric matrix and the adjoint is
the same recursion run from near to far.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import ndtr

from spectdl.physics import _compiled

# One step of the recursion: [1/6, 2/3, 1/6], variance 1/3 and fourth cumulant 0.
_STEP_VARIANCE = 1.0 / 3.0
# Residual variances (pixel²) start here; below it a residual's sampled shape aliases visibly.
_RESIDUAL_FLOOR = 0.5
_RESIDUAL_HALF_WIDTH = 2  # five taps hold a pixel Gaussian of σ ≤ 0.91 px to 0.6 % of its mass


def pixel_gaussian_kernel(variance_px2: np.ndarray, half_width: int) -> np.ndarray:
    """Pixel-integrated Gaussians ``Φ((n + ½)/σ) − Φ((n − ½)/σ)``, ``n = −h..h``, ``σ² = variance_px2``,
    renormalised to sum 1 (the mass beyond ±h); ``σ = 0`` gives the unit impulse.

    Args:
        variance_px2: ``[...]`` variances of the continuous Gaussian in pixel².
        half_width: ``h``; the kernels have ``2h + 1`` taps.

    Returns:
        ``[..., 2h+1]`` float64 kernels.
    """
    sigma = np.sqrt(np.clip(np.asarray(variance_px2, dtype=np.float64), 0.0, None))[..., None]
    n = np.arange(-half_width, half_width + 1, dtype=np.float64)
    safe = np.maximum(sigma, 1e-300)
    k = np.where(sigma > 0, ndtr((n + 0.5) / safe) - ndtr((n - 0.5) / safe), (n == 0).astype(np.float64))
    return k / k.sum(-1, keepdims=True)


def three_tap_kernel(variance_px2: np.ndarray) -> np.ndarray:
    """``[t/2, 1−t, t/2]``: the shortest symmetric kernel with variance exactly ``t`` (``t ≤ 0.5``)."""
    t = np.asarray(variance_px2, dtype=np.float64)[..., None]
    return np.concatenate([t / 2, 1 - t, t / 2], axis=-1)


def step_kernels(steps: np.ndarray) -> np.ndarray:
    """``S^k`` for ``S = [1/6, 2/3, 1/6]`` and integer ``k ≥ 0`` per entry of ``steps [...]``:
    ``[..., 2·max(k, 1) + 1]`` float64 kernels (variance ``k/3``), centred and zero-padded."""
    k = np.asarray(steps, dtype=np.int64)
    h = max(1, int(k.max(initial=0)))
    powers = np.zeros((h + 1, 2 * h + 1))
    powers[0, h] = 1.0
    step = three_tap_kernel(np.array(_STEP_VARIANCE))
    for i in range(1, h + 1):
        powers[i] = np.convolve(powers[i - 1], step, mode="same")
    return powers[k]


def split_variances(variance_px2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``V = m/3 + r``: whole steps ``m = max(0, ⌊3(V − ½)⌋)`` and residual variances ``r``
    (in ``[½, ⅚)``, or ``V`` itself below ``⅚``), elementwise."""
    v = np.clip(np.asarray(variance_px2, dtype=np.float64), 0.0, None)
    m = np.maximum(0, np.floor((v - _RESIDUAL_FLOOR) / _STEP_VARIANCE + 1e-9)).astype(np.int64)
    return m, v - m * _STEP_VARIANCE


def base_kernels(variance_px2: np.ndarray) -> np.ndarray:
    """Pixel-integrated Gaussian kernels wide enough (±4σ + 1) for the largest variance given."""
    v = np.asarray(variance_px2, dtype=np.float64)
    vmax = float(v.max(initial=0.0))
    return pixel_gaussian_kernel(v, int(math.ceil(4.0 * math.sqrt(vmax))) + 1)


class DepthBlur:
    """The linear map ``planes [D, G, S, Z] → image [G, S, Z]`` of the module docstring, and its adjoint.

    ``G`` groups (views × batch) each have their own kernels along the radial axis S and, for 3-D
    projections, the axial axis Z: the steps ``step_s [G, D−1, 2h+1]`` (``S^{k_j}``), the residuals
    ``res_s [G, D, 5]`` (``R_j``) and the final ``base_s [G, 2h'+1]`` (``S^{m_{D−1}}``), and the
    same with ``_z`` (``None`` for 2-D projections, where Z has size 1 and is not blurred).
    """

    def __init__(self, step_s, res_s, base_s, step_z=None, res_z=None, base_z=None) -> None:
        self.step_s, self.res_s, self.base_s = step_s, res_s, base_s
        self.step_z, self.res_z, self.base_z = step_z, res_z, base_z
        self.n_depth = res_s.shape[1]

        def moving(k):  # per step: whether any group's kernel is more than the identity
            h = k.shape[-1] // 2
            return (k[..., :h] != 0).any(-1).any(0)

        moves = moving(step_s) if step_z is None else moving(step_s) | moving(step_z)
        self.moves = [bool(v) for v in moves.tolist()]
        self.base_moves = bool(moving(base_s[:, None]).any()) or (base_z is not None and bool(moving(base_z[:, None]).any()))

    @classmethod
    def from_variances(cls, var_s, var_z=None, *, dtype=torch.float32, device=None) -> "DepthBlur":
        """Kernels from per-group, per-plane variances ``[G, D]`` in pixel² (far → near)."""

        def kernels(v):
            m, r = split_variances(v)
            steps = np.clip(m[:, :-1] - m[:, 1:], 0, None)
            return tuple(torch.as_tensor(k, dtype=dtype, device=device) for k in
                         (step_kernels(steps), pixel_gaussian_kernel(r, _RESIDUAL_HALF_WIDTH), step_kernels(m[:, -1])))

        step_s, res_s, base_s = kernels(var_s)
        step_z, res_z, base_z = kernels(var_z) if var_z is not None else (None, None, None)
        return cls(step_s, res_s, base_s, step_z, res_z, base_z)

    def select(self, index: torch.Tensor, repeats: int) -> "DepthBlur":
        """The kernels of groups ``index``, each repeated ``repeats`` times (for the batch)."""

        def pick(k):
            return None if k is None else k.index_select(0, index).repeat_interleave(repeats, 0)

        return DepthBlur(*(pick(k) for k in (self.step_s, self.res_s, self.base_s, self.step_z, self.res_z, self.base_z)))

    #: Run the no-autograd recursion compiled (:mod:`._compiled`) where it applies; the projector
    #: sets it from its ``compiled_loop`` on the blur of each call.
    compiled = True

    def _compiled_applies(self, t: torch.Tensor) -> bool:
        return self.compiled and self.is_three_tap and _compiled.takes(t)

    @property
    def is_three_tap(self) -> bool:
        """Whether every step (radial and axial) is one three-tap kernel (at most one ``S`` per plane)."""
        return self.step_s.shape[-1] == 3 and (self.step_z is None or self.step_z.shape[-1] == 3)

    @staticmethod
    def _taps(k: torch.Tensor, index: torch.Tensor | None, width: int, dims: int = 4) -> list:
        """Per depth of ``k [G, D', 2h+1]`` (groups ``index``, or all): the centre and one-sided taps
        ``(c0, c1, …)``, Python floats when all those groups share them (a circular orbit; float
        taps take ``add_(alpha=…)``, about twice as fast here as ``addcmul_``), else tensors of
        shape ``[G] + [1] * (dims − 1)``."""
        if index is not None:
            k = k.index_select(0, index)
        h = k.shape[-1] // 2
        half = k[..., h : h + width]
        if bool((half == half[:1]).all()):
            return [tuple(row) for row in half[0].double().tolist()]
        shape = (-1,) + (1,) * (dims - 1)
        return [tuple(half[:, j, t].view(shape) for t in range(half.shape[-1])) for j in range(half.shape[1])]

    def step_coefficients(self, index: torch.Tensor) -> tuple[list | None, list | None]:
        """The steps of groups ``index`` as ``(middle, side)`` per depth step, radial and axial
        (``None`` without an axial blur; an entry is ``None`` where that step is the identity for
        every group). Needs :attr:`is_three_tap`."""

        def steps(k):
            if k is None:
                return None
            return [t if self.moves[j] else None for j, t in enumerate(self._taps(k, index, 2))]

        return steps(self.step_s), steps(self.step_z)

    def residual_coefficients(self, index: torch.Tensor) -> tuple[list, list | None]:
        """The residual kernels of groups ``index`` as ``(c0, c1, c2)`` per plane, radial and axial."""
        width = _RESIDUAL_HALF_WIDTH + 1
        return self._taps(self.res_s, index, width), (None if self.res_z is None else self._taps(self.res_z, index, width))

    @staticmethod
    def symmetric_into(out: torch.Tensor | None, img: torch.Tensor, taps: tuple, dim: int) -> torch.Tensor:
        """The symmetric kernel ``[…, c2, c1, c0, c1, c2, …] ∗ img`` along ``dim`` with zero padding,
        by shifted adds (for these short kernels far cheaper than a grouped convolution call),
        written into ``out`` (``None``: a new tensor, as autograd needs); ``taps = (c0, c1, …)``
        are floats or tensors that broadcast against ``img``."""
        out = img * taps[0] if out is None else torch.mul(img, taps[0], out=out)
        n = img.shape[dim]
        for d, c in enumerate(taps[1:], 1):
            if d >= n:
                break
            if isinstance(c, float):
                if c == 0.0:
                    continue
                out.narrow(dim, d, n - d).add_(img.narrow(dim, 0, n - d), alpha=c)
                out.narrow(dim, 0, n - d).add_(img.narrow(dim, d, n - d), alpha=c)
            else:
                out.narrow(dim, d, n - d).addcmul_(img.narrow(dim, 0, n - d), c)
                out.narrow(dim, 0, n - d).addcmul_(img.narrow(dim, d, n - d), c)
        return out

    @classmethod
    def three_tap_into(cls, out: torch.Tensor | None, img: torch.Tensor, side, middle, dim: int) -> torch.Tensor:
        """``[side, middle, side] ∗ img`` along ``dim`` (see :meth:`symmetric_into`)."""
        return cls.symmetric_into(out, img, (middle, side), dim)

    @classmethod
    def _separable_into(cls, out, spare, img: torch.Tensor, taps_s: tuple, taps_z: tuple | None) -> torch.Tensor:
        """``taps_s`` radially, then ``taps_z`` axially (when given), of ``img [G, S, Z]``, into ``out``
        (``spare`` holds the radial pass; ``None`` for new tensors); see :meth:`symmetric_into`."""
        if taps_z is None:
            return cls.symmetric_into(out, img, taps_s, 1)
        return cls.symmetric_into(out, cls.symmetric_into(spare, img, taps_s, 1), taps_z, 2)

    @classmethod
    def _conv(cls, img: torch.Tensor, ks: torch.Tensor, kz: torch.Tensor | None) -> torch.Tensor:
        """Depthwise convolution of ``img [G, S, Z]`` with the separable kernel ``ks ⊗ kz``."""
        if ks.shape[-1] == 3 and (kz is None or kz.shape[-1] == 3):
            def taps(k):  # [G, 3] → (middle, side), each [G, 1, 1]
                return k[:, 1].view(-1, 1, 1), k[:, 0].view(-1, 1, 1)

            return cls._separable_into(None, None, img, taps(ks), None if kz is None else taps(kz))
        g = img.shape[0]
        hs = ks.shape[-1] // 2
        if kz is None:
            return F.conv2d(img.unsqueeze(0), ks.reshape(g, 1, -1, 1), padding=(hs, 0), groups=g)[0]
        hz = kz.shape[-1] // 2
        w = ks.reshape(g, 1, -1, 1) * kz.reshape(g, 1, 1, -1)
        return F.conv2d(img.unsqueeze(0), w, padding=(hs, hz), groups=g)[0]

    def _base(self, img: torch.Tensor) -> torch.Tensor:
        """The final ``S^{m_{D−1}}`` of ``img [G, S, Z]`` (the identity where no group has a step)."""
        return self._conv(img, self.base_s, self.base_z) if self.base_moves else img

    def _residual(self, planes: torch.Tensor) -> torch.Tensor:
        """``R_j ∗ planes[j]`` for every plane of ``planes [D, G, S, Z]``, as a new tensor."""
        h = _RESIDUAL_HALF_WIDTH

        def taps(k):  # [G, D, 5] → (c0, c1, c2), each [D, G, 1, 1]
            return tuple(k[..., h + t].transpose(0, 1).unsqueeze(-1).unsqueeze(-1) for t in range(h + 1))

        out = self.symmetric_into(None, planes, taps(self.res_s), 2)
        return out if self.res_z is None else self.symmetric_into(None, out, taps(self.res_z), 3)

    def _plane_taps(self, j: int) -> tuple[tuple, tuple | None]:
        """Plane ``j``'s residual taps ``(c0, c1, c2)``, radial and axial (see :meth:`_taps`)."""
        if not hasattr(self, "_res_rows"):
            width = _RESIDUAL_HALF_WIDTH + 1
            self._res_rows = (self._taps(self.res_s, None, width, 3),
                              None if self.res_z is None else self._taps(self.res_z, None, width, 3))
        return self._res_rows[0][j], None if self._res_rows[1] is None else self._res_rows[1][j]

    def _step_into(self, out: torch.Tensor, spare: torch.Tensor, img: torch.Tensor, j: int) -> torch.Tensor:
        """Step ``j`` (``S^{k_j}``, between planes ``j`` and ``j+1``) of ``img [G, S, Z]``, written into
        ``out`` (``spare`` is scratch for the axial pass); returns the tensor holding the result."""
        ks = self.step_s[:, j]
        kz = None if self.step_z is None else self.step_z[:, j]
        if ks.shape[-1] != 3 or (kz is not None and kz.shape[-1] != 3):
            return self._conv(img, ks, kz)
        if not hasattr(self, "_step_rows"):
            self._step_rows = (self._taps(self.step_s, None, 2, 3),
                               None if self.step_z is None else self._taps(self.step_z, None, 2, 3))
        return self._separable_into(out, spare, img, self._step_rows[0][j], None if kz is None else self._step_rows[1][j])

    def _residual_into(self, out: torch.Tensor, spare: torch.Tensor | None, plane: torch.Tensor, j: int) -> torch.Tensor:
        """``R_j ∗ plane`` for one plane ``[G, S, Z]``, written into ``out``."""
        return self._separable_into(out, spare, plane, *self._plane_taps(j))

    def forward(self, planes: torch.Tensor) -> torch.Tensor:
        """``planes [D, G, S, Z]`` (far → near) → ``[G, S, Z]``."""
        if torch.is_grad_enabled() and planes.requires_grad:
            res = self._residual(planes)  # whole-stack form: new tensors throughout, as autograd needs
            acc = res[0].clone()
            for j in range(1, self.n_depth):
                if self.moves[j - 1]:
                    kz = None if self.step_z is None else self.step_z[:, j - 1]
                    acc = self._conv(acc, self.step_s[:, j - 1], kz)
                acc.add_(res[j])
            return self._base(acc)
        if self._compiled_applies(planes):
            return self._base(_compiled.blur_forward(self, planes))
        # Plane by plane, in reused buffers: a plane's residual and step then run in cache, where
        # passes over the whole stack streamed it from memory ten times (3× slower at 128³).
        acc, tmp, res, spare = (torch.empty_like(planes[0]) for _ in range(4))
        for j in range(self.n_depth):
            r = self._residual_into(res, spare, planes[j], j)
            if j == 0:
                acc.copy_(r)
                continue
            if self.moves[j - 1]:
                stepped = self._step_into(tmp, spare, acc, j - 1)
                if stepped is tmp:
                    acc, tmp = tmp, acc
                else:
                    acc = stepped
            acc.add_(r)
        return self._base(acc)

    def adjoint(self, image: torch.Tensor) -> torch.Tensor:
        """``image [G, S, Z]`` → ``planes [D, G, S, Z]``: the exact transpose of :meth:`forward`."""
        if torch.is_grad_enabled() and image.requires_grad:
            g = self._base(image)
            out = [g]
            for j in range(self.n_depth - 1, 0, -1):
                if self.moves[j - 1]:
                    kz = None if self.step_z is None else self.step_z[:, j - 1]
                    g = self._conv(g, self.step_s[:, j - 1], kz)
                out.append(g)
            out.reverse()
            return self._residual(torch.stack(out, 0))
        if self._compiled_applies(image):
            return _compiled.blur_adjoint(self, self._base(image))
        out = image.new_empty((self.n_depth,) + tuple(image.shape))
        g = self._base(image)
        bufs = [torch.empty_like(image), torch.empty_like(image)]
        spare = torch.empty_like(image)
        for j in range(self.n_depth - 1, -1, -1):
            self._residual_into(out[j], spare, g, j)
            if j > 0 and self.moves[j - 1]:
                target = bufs[0] if g is not bufs[0] else bufs[1]
                g = self._step_into(target, spare, g, j - 1)
        return out


def planar_response(views: torch.Tensor, collimator, distances_mm, pixel_mm) -> torch.Tensor:
    """Planar views blurred by the collimator-detector response at one distance per view.

    ``views [..., V, H, W]`` (e.g. anterior and posterior, ``V = 2``); view ``v`` is convolved with
    the separable pixel-integrated Gaussian of variance ``σ²(b_v) / pixel²`` per axis, ``σ(b) =
    collimator.fwhm_mm(b) / 2.3548`` at ``b_v = distances_mm[v]`` from the collimator face. The
    kernels sum to 1 and are zero-padded, so counts are kept except what spreads past the edge.
    ``pixel_mm``: one size, or ``(rows, columns)``. Returns a tensor of ``views``' shape and dtype.
    """
    from spectdl.errors import InputError

    if not isinstance(views, torch.Tensor) or views.dim() < 3:
        raise InputError(f"views: expected a tensor [..., V, H, W], found "
                         f"{tuple(views.shape) if isinstance(views, torch.Tensor) else type(views).__name__}")
    d = np.atleast_1d(np.asarray(distances_mm, dtype=np.float64))
    if d.shape != (views.shape[-3],) or not np.all(np.isfinite(d)) or np.any(d < 0):
        raise InputError(f"distances_mm: {d.tolist()}; expected {views.shape[-3]} distances >= 0 mm, one per view")
    px = np.broadcast_to(np.asarray(pixel_mm, dtype=np.float64), (2,))
    if not np.all(px > 0):
        raise InputError(f"pixel_mm: {px.tolist()}; expected sizes > 0")
    sigma = np.asarray(collimator.sigma_mm(d), dtype=np.float64)
    out = []
    lead = views.shape[:-3]
    x = views.reshape(-1, *views.shape[-3:])
    for v in range(views.shape[-3]):
        img = x[:, v : v + 1]
        for axis, size in ((0, px[0]), (1, px[1])):
            k = torch.as_tensor(base_kernels(np.array(sigma[v] ** 2 / size**2)), dtype=views.dtype, device=views.device)
            h = (k.numel() - 1) // 2
            shape = (1, 1, k.numel(), 1) if axis == 0 else (1, 1, 1, k.numel())
            pad = (h, 0) if axis == 0 else (0, h)
            img = F.conv2d(img, k.reshape(shape), padding=pad)
        out.append(img)
    return torch.cat(out, 1).reshape(*lead, *views.shape[-3:])
