"""Channelized Hotelling observer (CHO): a model observer for lesion detectability.

The studies use it in place of human readers' scores for a signal-known-exactly,
background-known-statistically detection task: one set of image patches holds the lesion at
the patch centre (signal present), the other does not (signal absent).

Notation (all computed in float64):

* ``g`` — a patch flattened to a column of ``P = H·W`` pixel values.
* ``U`` — the channel matrix ``[C, P]``, one channel per row; channel outputs ``v = U g``
  (``C`` numbers per patch).
* ``Δv = v̄₁ − v̄₀`` — the difference of the class means of ``v`` (1 = present, 0 = absent).
* ``S = (S₁ + S₀) / 2`` — the average of the two intra-class sample covariances of ``v``
  (``ddof = 1``).
* ``K_int = internal_noise · diag(S)`` — internal (observer) noise, proportional to the channel
  variances; 0 by default.
* Template ``w = (S + K_int)⁺ Δv`` and test statistic ``t = wᵀ (v + ε)`` with
  ``ε ~ N(0, K_int)``; ``⁺`` is the symmetric pseudo-inverse, which equals the inverse when
  ``S`` is well conditioned and stays finite when it is not.
* Detectability ``d′ = (t̄₁ − t̄₀) / sqrt((var t₁ + var t₀) / 2)``; by resubstitution and
  without internal noise this equals ``sqrt(Δvᵀ S⁻¹ Δv)``. ``AUC`` is the Mann–Whitney
  (Wilcoxon) area under the ROC curve of ``t``, ties counting one half.

References: Barrett & Myers, *Foundations of Image Science* (2004), ch. 13–14 (Hotelling and
channelized observers, Laguerre–Gauss channels); Abbey & Barrett, JOSA A 18(3):473 (2001)
(sparse difference-of-Gaussians channels and internal noise).

Conventions: patches are ``[N, H, W]`` torch tensors or numpy arrays in any unit (counts,
kBq/ml …; d′ and AUC are dimensionless and invariant to a common scale); pixel distances are in
pixels, measured from the patch centre ``((H − 1) / 2, (W − 1) / 2)``; channels are returned as
float64 ``[C, H·W]`` tensors (row-major flattening of ``[H, W]``, as ``patch.reshape(-1)``).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
import torch
from scipy import special, stats

from spectdl.errors import InputError

__all__ = [
    "CHO",
    "CHOResult",
    "cho_detectability",
    "cho_train",
    "dog_channels",
    "extract_patches",
    "laguerre_gauss_channels",
]

# Replicates are processed in blocks so that memory stays O(block · N · C) for large studies.
_BOOTSTRAP_BLOCK = 128
# Relative eigenvalue cut-off of the (standardised) covariance pseudo-inverse.
_RCOND = 1e-10


# --------------------------------------------------------------------------- validation helpers

def _patch_shape(size, name: str = "size") -> tuple[int, int]:
    if isinstance(size, numbers.Integral) and not isinstance(size, bool):
        shape = (int(size), int(size))
    else:
        try:
            shape = tuple(int(s) for s in size)
            ok = len(shape) == 2 and all(float(s) == float(v) for s, v in zip(shape, size))
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise InputError(f"{name}: expected an int or a pair of ints (H, W), found {size!r}")
    if min(shape) < 1:
        raise InputError(f"{name}: every size must be >= 1, found {size!r}")
    return shape


def _positive(name: str, value, *, allow_zero: bool = False) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name}: expected a real number, found {value!r}") from None
    if not math.isfinite(out) or out < 0 or (out == 0 and not allow_zero):
        expected = ">= 0" if allow_zero else "> 0"
        raise InputError(f"{name}: expected a finite number {expected}, found {value!r}")
    return out


def _count(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise InputError(f"{name}: expected an int >= {minimum}, found {value!r}")
    return int(value)


def _as_float64(name: str, x) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x.detach()
    elif isinstance(x, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(x))
    else:
        raise InputError(f"{name}: expected a torch.Tensor or numpy.ndarray, found {type(x).__name__}")
    if t.is_complex() or t.dtype == torch.bool:
        raise InputError(f"{name}: expected real floating or integer values, found dtype {t.dtype}")
    return t.to(torch.float64)


def _patches(name: str, x, minimum: int = 2) -> torch.Tensor:
    t = _as_float64(name, x)
    if t.ndim != 3:
        raise InputError(f"{name}: expected patches [N, H, W] (3 dims), found shape {tuple(t.shape)}")
    if t.shape[0] < minimum:
        raise InputError(f"{name}: expected at least {minimum} patches, found {t.shape[0]}")
    if not torch.isfinite(t).all():
        bad = int((~torch.isfinite(t)).sum())
        raise InputError(f"{name}: expected finite values, found {bad} NaN/inf value(s)")
    return t


def _pair(signal_present, signal_absent) -> tuple[torch.Tensor, torch.Tensor]:
    g1 = _patches("signal_present", signal_present)
    g0 = _patches("signal_absent", signal_absent)
    if g1.shape[1:] != g0.shape[1:]:
        raise InputError(
            f"signal_absent: patch size {tuple(g0.shape[1:])}; expected the size of "
            f"signal_present, {tuple(g1.shape[1:])}"
        )
    return g1, g0.to(g1.device)


def _channel_matrix(channels, hw: tuple[int, int], device) -> torch.Tensor:
    u = _as_float64("channels", channels)
    h, w = hw
    if u.ndim == 3:
        if tuple(u.shape[1:]) != (h, w):
            raise InputError(f"channels: shape {tuple(u.shape)}; expected [C, {h}, {w}] to match the patches")
        u = u.reshape(u.shape[0], -1)
    elif u.ndim == 2:
        if u.shape[1] != h * w:
            raise InputError(
                f"channels: shape {tuple(u.shape)}; expected [C, {h * w}] (H·W of {h}×{w} patches)"
            )
    else:
        raise InputError(f"channels: shape {tuple(u.shape)}; expected [C, H·W] or [C, H, W]")
    if u.shape[0] < 1:
        raise InputError("channels: expected at least 1 channel, found 0")
    if not torch.isfinite(u).all():
        raise InputError("channels: expected finite values, found NaN/inf")
    return u.to(device)


def _radius2(hw: tuple[int, int]) -> torch.Tensor:
    """Squared distance in pixels from the patch centre ((H − 1)/2, (W − 1)/2), shape [H, W]."""
    h, w = hw
    y = torch.arange(h, dtype=torch.float64) - (h - 1) / 2
    x = torch.arange(w, dtype=torch.float64) - (w - 1) / 2
    return y[:, None] ** 2 + x[None, :] ** 2


# --------------------------------------------------------------------------- channels

def laguerre_gauss_channels(size, *, n_channels: int = 6, width_px: float | None = None) -> torch.Tensor:
    """Laguerre–Gauss (LG) channels centred on the patch centre.

    ``u_j(r) = (√2 / a) · exp(−π r² / a²) · L_j(2π r² / a²)``, ``j = 0 … n_channels − 1``, with
    ``L_j`` the Laguerre polynomial and ``r`` the distance in pixels from
    ``((H − 1)/2, (W − 1)/2)``. These functions are orthonormal over the plane
    (``∫ u_j u_k d²r = δ_jk``), so on a grid much larger than ``a`` the sampled channels satisfy
    ``U Uᵀ ≈ I``. ``u_0`` is proportional to a Gaussian of standard deviation
    ``a / √(2π)``: a Gaussian lesion of standard deviation ``σ`` is matched by
    ``a = σ √(2π)``.

    Args:
        size: patch size, an int or ``(H, W)``.
        n_channels: number of channels ``C`` (>= 1).
        width_px: the Gaussian width ``a`` in pixels; ``None`` means ``min(H, W) / 4``.

    Returns:
        float64 tensor ``[C, H·W]`` (row-major flattening of ``[H, W]``), in 1/pixel units
        (so that ``v = U g`` approximates the continuous inner product).
    """
    hw = _patch_shape(size)
    n = _count("n_channels", n_channels, 1)
    a = min(hw) / 4 if width_px is None else _positive("width_px", width_px)
    x = 2 * math.pi * _radius2(hw) / a**2
    gauss = math.sqrt(2) / a * torch.exp(-x / 2)
    xs = x.numpy()
    rows = [gauss * torch.from_numpy(special.eval_laguerre(j, xs)) for j in range(n)]
    return torch.stack(rows).reshape(n, -1)


def dog_channels(size, *, n_channels: int = 3, sigma0_px: float = 0.015, alpha: float = 2.0,
                 q: float = 2.0) -> torch.Tensor:
    """Difference-of-Gaussians (DoG) channels of Abbey & Barrett (2001), centred on the patch centre.

    The channels are defined in the **frequency domain** (radial frequency ``ρ`` in cycles per
    pixel):

        ``C_j(ρ) = exp(−½ (ρ / (Q σ_j))²) − exp(−½ (ρ / σ_j)²)``,  ``σ_j = σ₀ α^j``,
        ``j = 0 … n_channels − 1``,

    and sampled in space through their exact inverse 2-D Fourier transform (a difference of two
    spatial Gaussians):

        ``c_j(r) = 2π (Qσ_j)² exp(−2π² (Qσ_j)² r²) − 2π σ_j² exp(−2π² σ_j² r²)``,

    with ``r`` in pixels from ``((H − 1)/2, (W − 1)/2)``. Sampling the closed form rather than
    inverting a DFT keeps the channel real and exactly centred for even sizes too; the DFT
    magnitude of ``c_j`` on the patch then reproduces ``C_j(ρ)`` wherever the channel fits in
    the patch (spatial widths ``1 / (2π σ_j)`` and ``1 / (2π Q σ_j)`` pixels). The defaults are
    the sparse DoG set (3 channels, σ₀ = 0.015 cycles/pixel, α = 2, Q = 2).

    Args:
        size: patch size, an int or ``(H, W)``.
        n_channels: number of channels ``C`` (>= 1).
        sigma0_px: ``σ₀`` in **cycles per pixel** (a frequency, not a length).
        alpha: ratio between successive ``σ_j`` (> 0).
        q: ratio ``Q`` of the two Gaussians' widths in each channel (> 1 for a band-pass).

    Returns:
        float64 tensor ``[C, H·W]`` (row-major flattening of ``[H, W]``).
    """
    hw = _patch_shape(size)
    n = _count("n_channels", n_channels, 1)
    s0 = _positive("sigma0_px", sigma0_px)
    a = _positive("alpha", alpha)
    qq = _positive("q", q)
    if qq == 1.0:
        raise InputError("q: expected Q != 1 (Q = 1 makes every channel identically zero), found 1.0")
    r2 = _radius2(hw)

    def inverse_ft(sig: float) -> torch.Tensor:
        # inverse 2-D FT of exp(−ρ²/(2σ²)) with the e^{−2πi f·x} convention
        return 2 * math.pi * sig**2 * torch.exp(-2 * math.pi**2 * sig**2 * r2)

    rows = [inverse_ft(qq * s0 * a**j) - inverse_ft(s0 * a**j) for j in range(n)]
    return torch.stack(rows).reshape(n, -1)


def _resolve_channels(channels, hw: tuple[int, int], device) -> tuple[torch.Tensor, str]:
    if isinstance(channels, str):
        if channels == "lg":
            return laguerre_gauss_channels(hw).to(device), "lg"
        if channels == "dog":
            return dog_channels(hw).to(device), "dog"
        raise InputError(f"channels: expected 'lg', 'dog' or a tensor [C, H·W], found {channels!r}")
    return _channel_matrix(channels, hw, device), "custom"


# --------------------------------------------------------------------------- the observer

class CHO:
    """A channelized Hotelling observer: ``fit`` learns the template, ``score`` applies it.

    Args:
        channels: channel matrix ``[C, H·W]`` or ``[C, H, W]`` (torch or numpy), e.g. from
            :func:`laguerre_gauss_channels` or :func:`dog_channels`.
        internal_noise: ``κ >= 0``; internal noise ``K_int = κ · diag(S)`` enters the template
            ``w = (S + K_int)⁺ Δv`` and, as ``ε ~ N(0, K_int)`` added to the channel outputs,
            the test statistic.

    After :meth:`fit`: ``template`` ``w`` ``[C]``, ``delta_v`` ``[C]``, ``covariance`` ``S``
    ``[C, C]`` and ``internal_covariance`` ``K_int`` ``[C, C]``, all float64 on the device of
    the training patches.
    """

    def __init__(self, channels, *, internal_noise: float = 0.0) -> None:
        self.channels = _as_float64("channels", channels)
        if self.channels.ndim not in (2, 3):
            raise InputError(f"channels: shape {tuple(self.channels.shape)}; expected [C, H·W] or [C, H, W]")
        self.internal_noise = _positive("internal_noise", internal_noise, allow_zero=True)
        self.template: torch.Tensor | None = None
        self.delta_v: torch.Tensor | None = None
        self.covariance: torch.Tensor | None = None
        self.internal_covariance: torch.Tensor | None = None
        self._hw: tuple[int, int] | None = None

    def channel_outputs(self, patches) -> torch.Tensor:
        """``v = U g`` for every patch: ``[N, H, W]`` → float64 ``[N, C]``."""
        g = _patches("patches", patches, minimum=1)
        u = _channel_matrix(self.channels, tuple(g.shape[1:]), g.device)
        return g.reshape(g.shape[0], -1) @ u.T

    def fit(self, signal_present, signal_absent) -> "CHO":
        """Learn ``w = (S + K_int)⁺ Δv`` from training patches ``[N₁, H, W]`` and ``[N₀, H, W]``."""
        g1, g0 = _pair(signal_present, signal_absent)
        u = _channel_matrix(self.channels, tuple(g1.shape[1:]), g1.device)
        v1 = (g1.reshape(g1.shape[0], -1) @ u.T).cpu().numpy()
        v0 = (g0.reshape(g0.shape[0], -1) @ u.T).cpu().numpy()
        fitted = _fit(v1[None], v0[None], self.internal_noise)
        self.delta_v, self.covariance, self.internal_covariance, self.template = (
            torch.from_numpy(x[0]).to(g1.device) for x in fitted
        )
        self._hw = tuple(g1.shape[1:])
        return self

    @property
    def d_prime_train(self) -> float:
        """``sqrt(Δvᵀ (S + K_int)⁺ Δv)`` on the training data (optimistically biased)."""
        self._check_fitted()
        return math.sqrt(max(float(self.delta_v @ self.template), 0.0))

    def score(self, patches, *, rng: np.random.Generator | None = None) -> torch.Tensor:
        """Test statistic ``t = wᵀ (v + ε)`` of each patch ``[N, H, W]`` → float64 ``[N]``.

        ``rng`` (a ``numpy.random.Generator``) draws the internal noise ``ε ~ N(0, K_int)`` and
        is required when ``internal_noise > 0``; it is unused otherwise.
        """
        self._check_fitted()
        g = _patches("patches", patches, minimum=1)
        if tuple(g.shape[1:]) != self._hw:
            raise InputError(f"patches: patch size {tuple(g.shape[1:])}; expected {self._hw} as in fit")
        v = self.channel_outputs(g)
        if self.internal_noise > 0:
            if not isinstance(rng, np.random.Generator):
                raise InputError(
                    "rng: expected a numpy.random.Generator when internal_noise > 0, "
                    f"found {type(rng).__name__}"
                )
            sd = torch.sqrt(torch.diagonal(self.internal_covariance))
            z = torch.from_numpy(rng.standard_normal(tuple(v.shape))).to(v.device)
            v = v + z * sd
        return v @ self.template

    def _check_fitted(self) -> None:
        if self.template is None:
            raise InputError("CHO: not fitted; call fit(signal_present, signal_absent) first")


def cho_train(signal_present, signal_absent, channels, *, internal_noise: float = 0.0) -> CHO:
    """Fit a :class:`CHO` on training patches; shorthand for ``CHO(channels, …).fit(…)``.

    Args:
        signal_present, signal_absent: patches ``[N₁, H, W]`` and ``[N₀, H, W]`` (N >= 2 each).
        channels: channel matrix ``[C, H·W]`` or ``[C, H, W]``.
        internal_noise: ``κ`` of ``K_int = κ · diag(S)``.
    """
    return CHO(channels, internal_noise=internal_noise).fit(signal_present, signal_absent)


# --------------------------------------------------------------------------- detectability

@dataclass(frozen=True)
class CHOResult:
    """Detectability of one CHO study (see :func:`cho_detectability`).

    Attributes:
        d_prime: ``d′ = (t̄₁ − t̄₀) / sqrt((var t₁ + var t₀) / 2)`` on the test patches.
        d_prime_ci: bootstrap percentile interval ``(low, high)`` of ``d′``.
        auc: Mann–Whitney AUC of the test statistics.
        auc_ci: bootstrap percentile interval ``(low, high)`` of the AUC.
        n_present, n_absent: number of patches given per class (training + test).
        n_test_present, n_test_absent: number of patches scored per class.
        channels: ``"lg"``, ``"dog"`` or ``"custom"``.
        n_channels: ``C``.
        train_fraction: the hold-out training fraction, ``None`` for resubstitution.
        confidence_level: level of both intervals.
        n_bootstrap: number of bootstrap replicates (0: intervals are NaN).
    """

    d_prime: float
    d_prime_ci: tuple[float, float]
    auc: float
    auc_ci: tuple[float, float]
    n_present: int
    n_absent: int
    n_test_present: int
    n_test_absent: int
    channels: str
    n_channels: int
    train_fraction: float | None
    confidence_level: float
    n_bootstrap: int


def _d_prime(t1: np.ndarray, t0: np.ndarray) -> np.ndarray:
    """d′ along the last axis; ±inf when the classes separate without spread, 0 for 0/0."""
    diff = t1.mean(-1) - t0.mean(-1)
    pooled = np.sqrt((t1.var(-1, ddof=1) + t0.var(-1, ddof=1)) / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = diff / pooled
    return np.where(pooled > 0, d, np.where(diff == 0, 0.0, np.copysign(np.inf, diff)))


def _auc(t1: np.ndarray, t0: np.ndarray) -> np.ndarray:
    """Mann–Whitney AUC along the last axis: ``(R₁ − n₁(n₁ + 1)/2) / (n₁ n₀)``, ties = ½."""
    n1, n0 = t1.shape[-1], t0.shape[-1]
    ranks = stats.rankdata(np.concatenate([t1, t0], axis=-1), axis=-1)
    return (ranks[..., :n1].sum(-1) - n1 * (n1 + 1) / 2) / (n1 * n0)


def _fit(v1: np.ndarray, v0: np.ndarray, kappa: float):
    """Batched Hotelling fit: channel outputs ``[B, N₁, C]``, ``[B, N₀, C]`` → Δv, S, K_int, w.

    Returns ``[B, C]``, ``[B, C, C]``, ``[B, C, C]`` and ``[B, C]`` float64 arrays.
    """
    dv = v1.mean(1) - v0.mean(1)
    c1 = v1 - v1.mean(1, keepdims=True)
    c0 = v0 - v0.mean(1, keepdims=True)
    s = (np.einsum("bni,bnj->bij", c1, c1) / (v1.shape[1] - 1)
         + np.einsum("bni,bnj->bij", c0, c0) / (v0.shape[1] - 1)) / 2
    diag = np.diagonal(s, axis1=1, axis2=2)
    k = kappa * diag[:, :, None] * np.eye(s.shape[-1])
    # Solve in the channel-standardised frame (S scaled to unit diagonal): the CHO does not
    # depend on channel gains, and a relative eigenvalue cut-off is then meaningful whatever
    # the channels' units. The pseudo-inverse (not solve) keeps the template finite when S is
    # singular (collinear channels, fewer training patches than channels); directions cut
    # carry no information that float64 can estimate.
    scale = np.sqrt(diag * (1 + kappa))
    scale = np.where(scale > 0, scale, 1.0)
    a = (s + k) / (scale[:, :, None] * scale[:, None, :])
    w = np.einsum("bij,bj->bi", np.linalg.pinv(a, rcond=_RCOND, hermitian=True), dv / scale) / scale
    return dv, s, k, w


def _statistics(v1_tr, v0_tr, v1_te, v0_te, z1, z0, kappa):
    """Batched train → score: channel outputs ``[B, N, C]`` → test statistics ``[B, N₁]``, ``[B, N₀]``.

    ``z1``/``z0`` are standard normal draws ``[B, N, C]`` (or None) scaled to the internal noise.
    """
    _, _, k, w = _fit(v1_tr, v0_tr, kappa)
    if z1 is not None:
        sd = np.sqrt(np.diagonal(k, axis1=1, axis2=2))[:, None, :]
        v1_te = v1_te + z1 * sd
        v0_te = v0_te + z0 * sd
    return np.einsum("bnc,bc->bn", v1_te, w), np.einsum("bnc,bc->bn", v0_te, w)


def cho_detectability(signal_present, signal_absent, *, channels="lg", train_fraction: float | None = 0.5,
                      internal_noise: float = 0.0, seed: int | None = 0, n_bootstrap: int = 1000,
                      confidence_level: float = 0.95) -> CHOResult:
    """Lesion detectability ``d′`` and AUC of a channelized Hotelling observer, with bootstrap CIs.

    Each class is split at random (stratified, drawn with ``seed``): the template is trained on
    ``round(train_fraction · N)`` patches of each class and the test statistics come from the
    rest, so ``d′`` is not optimistically biased by scoring the training patches.
    ``train_fraction=None`` trains and scores on all patches (resubstitution; biased upwards by
    roughly ``C / N``, but then ``d′ = sqrt(Δvᵀ S⁻¹ Δv)`` exactly when ``internal_noise = 0``).

    The intervals are bootstrap percentile intervals over cases: each replicate resamples, with
    replacement and within each class, the training and the test patches (the same resample for
    both under resubstitution), retrains the template and rescores, so they include the
    template's training variability. Internal-noise draws stay attached to their patch.

    Args:
        signal_present, signal_absent: patches ``[N₁, H, W]`` and ``[N₀, H, W]`` (torch or numpy,
            any intensity unit; lesion at the patch centre), N >= 2 per class and per part.
        channels: ``"lg"`` (:func:`laguerre_gauss_channels` defaults: 6 channels,
            ``a = min(H, W) / 4``), ``"dog"`` (:func:`dog_channels` defaults: sparse DoG) or a
            channel matrix ``[C, H·W]`` / ``[C, H, W]``.
        train_fraction: fraction in (0, 1) of each class used for training, or ``None``.
        internal_noise: ``κ >= 0`` of ``K_int = κ · diag(S)`` (see :class:`CHO`).
        seed: seed of the ``numpy.random.default_rng`` that draws the split, the internal noise
            and the bootstrap; ``None`` draws fresh OS entropy. No global RNG state is used.
        n_bootstrap: replicates (>= 0; 0 skips the bootstrap and the intervals are NaN).
        confidence_level: in (0, 1).

    Returns:
        :class:`CHOResult`.
    """
    g1, g0 = _pair(signal_present, signal_absent)
    u, name = _resolve_channels(channels, tuple(g1.shape[1:]), g1.device)
    kappa = _positive("internal_noise", internal_noise, allow_zero=True)
    n_boot = _count("n_bootstrap", n_bootstrap, 0)
    try:
        level = float(confidence_level)
    except (TypeError, ValueError):
        level = float("nan")
    if not 0 < level < 1:
        raise InputError(f"confidence_level: expected a number in (0, 1), found {confidence_level!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
        raise InputError(f"seed: expected an int or None, found {seed!r}")
    rng = np.random.default_rng(seed)

    # channel outputs are all the CHO needs; everything after this is small [N, C] arithmetic
    v1 = (g1.reshape(g1.shape[0], -1) @ u.T).cpu().numpy()
    v0 = (g0.reshape(g0.shape[0], -1) @ u.T).cpu().numpy()

    if train_fraction is None:
        parts = [(v1, v1), (v0, v0)]
    else:
        try:
            frac = float(train_fraction)
        except (TypeError, ValueError):
            frac = float("nan")
        if not 0 < frac < 1:
            raise InputError(f"train_fraction: expected a number in (0, 1) or None, found {train_fraction!r}")
        parts = []
        for cls, v in (("signal_present", v1), ("signal_absent", v0)):
            n_train = int(round(frac * v.shape[0]))
            if n_train < 2 or v.shape[0] - n_train < 2:
                raise InputError(
                    f"{cls}: {v.shape[0]} patches split by train_fraction={train_fraction!r} into "
                    f"{n_train} training and {v.shape[0] - n_train} test patches; expected >= 2 in each"
                )
            order = rng.permutation(v.shape[0])
            parts.append((v[order[:n_train]], v[order[n_train:]]))
    (v1_tr, v1_te), (v0_tr, v0_te) = parts
    if kappa > 0:
        z1 = rng.standard_normal(v1_te.shape)
        z0 = rng.standard_normal(v0_te.shape)
    else:
        z1 = z0 = None

    def run(i1_tr, i0_tr, i1_te, i0_te):
        # index arrays [B, n] select resampled cases; z rows follow their patch
        return _statistics(
            v1_tr[i1_tr], v0_tr[i0_tr], v1_te[i1_te], v0_te[i0_te],
            None if z1 is None else z1[i1_te], None if z0 is None else z0[i0_te], kappa,
        )

    ident = [np.arange(x.shape[0])[None] for x in (v1_tr, v0_tr, v1_te, v0_te)]
    t1, t0 = run(*ident)
    d_prime = float(_d_prime(t1, t0)[0])
    auc = float(_auc(t1, t0)[0])

    nan = (float("nan"), float("nan"))
    d_ci, auc_ci = nan, nan
    if n_boot > 0:
        d_boot, auc_boot = [], []
        for start in range(0, n_boot, _BOOTSTRAP_BLOCK):
            b = min(_BOOTSTRAP_BLOCK, n_boot - start)
            i1_tr = rng.integers(0, v1_tr.shape[0], (b, v1_tr.shape[0]))
            i0_tr = rng.integers(0, v0_tr.shape[0], (b, v0_tr.shape[0]))
            if train_fraction is None:
                i1_te, i0_te = i1_tr, i0_tr
            else:
                i1_te = rng.integers(0, v1_te.shape[0], (b, v1_te.shape[0]))
                i0_te = rng.integers(0, v0_te.shape[0], (b, v0_te.shape[0]))
            bt1, bt0 = run(i1_tr, i0_tr, i1_te, i0_te)
            d_boot.append(_d_prime(bt1, bt0))
            auc_boot.append(_auc(bt1, bt0))
        q = [(1 - level) / 2, (1 + level) / 2]
        d_ci = tuple(float(x) for x in np.quantile(np.concatenate(d_boot), q))
        auc_ci = tuple(float(x) for x in np.quantile(np.concatenate(auc_boot), q))

    return CHOResult(
        d_prime=d_prime, d_prime_ci=d_ci, auc=auc, auc_ci=auc_ci,
        n_present=int(g1.shape[0]), n_absent=int(g0.shape[0]),
        n_test_present=int(v1_te.shape[0]), n_test_absent=int(v0_te.shape[0]),
        channels=name, n_channels=int(u.shape[0]),
        train_fraction=None if train_fraction is None else float(train_fraction),
        confidence_level=level, n_bootstrap=n_boot,
    )


# --------------------------------------------------------------------------- patches

def extract_patches(image, centres_px, size) -> torch.Tensor:
    """Crop ``size × size`` patches around integer pixel/voxel centres.

    A 2-D image ``[H, W]`` takes centres ``[N, 2]`` as ``(row, col)`` indices; a 3-D volume
    ``[X, Y, Z]`` takes centres ``[N, 3]`` as ``(x, y, z)`` indices and gives the axial
    ``(x, y)`` patch in slice ``z`` (z is the scanner axis, see :mod:`spectdl.geometry`). The
    centre voxel lands at index ``size // 2`` of the patch along each axis, which is the channel
    centre ``(size − 1) / 2`` for odd sizes (for even sizes it is half a pixel past it; prefer
    odd sizes).

    Args:
        image: torch tensor (or numpy array) ``[H, W]`` or ``[X, Y, Z]``.
        centres_px: integer indices ``[N, 2]`` or ``[N, 3]`` (sequence, array or tensor).
        size: patch side in pixels (int >= 1).

    Returns:
        ``[N, size, size]`` tensor with the dtype and device of ``image`` (a copy).

    Raises:
        InputError: a patch reaches outside the image, or an argument has the wrong shape.
    """
    if isinstance(image, np.ndarray):
        image = torch.from_numpy(np.ascontiguousarray(image))
    if not isinstance(image, torch.Tensor):
        raise InputError(f"image: expected a torch.Tensor or numpy.ndarray, found {type(image).__name__}")
    if image.ndim not in (2, 3):
        raise InputError(f"image: shape {tuple(image.shape)}; expected [H, W] or [X, Y, Z]")
    side = _count("size", size, 1)
    c = torch.as_tensor(np.asarray(centres_px.cpu() if isinstance(centres_px, torch.Tensor) else centres_px))
    if c.ndim == 1 and c.numel() == image.ndim:
        c = c[None]
    if c.ndim != 2 or c.shape[1] != image.ndim:
        raise InputError(
            f"centres_px: shape {tuple(c.shape)}; expected [N, {image.ndim}] for a {image.ndim}-D image"
        )
    if c.is_floating_point():
        if not torch.isfinite(c).all() or (c != c.round()).any():
            raise InputError(f"centres_px: expected integer voxel indices, found {c.tolist()!r}")
    elif c.dtype == torch.bool or c.is_complex():
        raise InputError(f"centres_px: expected integer voxel indices, found dtype {c.dtype}")
    c = c.to(torch.int64)
    lo = side // 2
    out = []
    for k, centre in enumerate(c.tolist()):
        starts = [centre[0] - lo, centre[1] - lo]
        for ax, s0 in enumerate(starts):
            if s0 < 0 or s0 + side > image.shape[ax]:
                raise InputError(
                    f"centres_px[{k}]: {tuple(centre)} with size {side} spans indices "
                    f"{s0}..{s0 + side - 1} along axis {ax}; expected within 0..{image.shape[ax] - 1}"
                )
        if image.ndim == 3 and not 0 <= centre[2] < image.shape[2]:
            raise InputError(
                f"centres_px[{k}]: slice z={centre[2]}; expected within 0..{image.shape[2] - 1}"
            )
        sl = (slice(starts[0], starts[0] + side), slice(starts[1], starts[1] + side))
        out.append(image[sl] if image.ndim == 2 else image[sl + (centre[2],)])
    if not out:
        raise InputError("centres_px: expected at least one centre, found 0")
    return torch.stack(out).clone()
