"""Filtered back-projection: the analytic baseline (no attenuation or resolution model)."""

from __future__ import annotations

import math

import torch

from spectdl.errors import InputError
from spectdl.physics import SpectProjector

_WINDOWS = ("ramp", "shepp-logan", "cosine", "hamming", "hann")


def ramp_filter(y: torch.Tensor, window: str = "ramp", cutoff: float = 1.0) -> torch.Tensor:
    """Filter projections ``[B, C, V, R(, Z)]`` along the radial axis with an apodised ramp.

    The ramp is the exact band-limited (Ram-Lak) kernel ``h(0) = 1/4``, ``h(n odd) = −1/(π n)²``
    (Kak & Slaney, eq. 3.61, in pixel units) transformed after zero-padding, so there is no DC
    error; ``window`` multiplies it in frequency, with ``cutoff`` as a fraction of Nyquist.
    """
    if window not in _WINDOWS:
        raise InputError(f"window: unknown {window!r}; expected one of {_WINDOWS}")
    if not 0 < cutoff <= 1:
        raise InputError(f"cutoff: expected a fraction of Nyquist in (0, 1], found {cutoff}")
    n = y.shape[3]
    size = 1 << int(math.ceil(math.log2(2 * n)))
    k = torch.arange(size, device=y.device)
    k = torch.where(k <= size // 2, k, k - size).to(y.dtype)
    h = torch.zeros(size, dtype=y.dtype, device=y.device)
    h[0] = 0.25
    odd = (k.abs() % 2) == 1
    h[odd] = -1.0 / (math.pi * k[odd]) ** 2
    resp = torch.fft.fft(h).real
    f = torch.fft.fftfreq(size, device=y.device).to(y.dtype).abs() / 0.5  # fraction of Nyquist
    w = {
        "ramp": torch.ones_like(f),
        "shepp-logan": torch.sinc(f / (2 * cutoff)),
        "cosine": torch.cos(math.pi * f / (2 * cutoff)),
        "hamming": 0.54 + 0.46 * torch.cos(math.pi * f / cutoff),
        "hann": 0.5 + 0.5 * torch.cos(math.pi * f / cutoff),
    }[window]
    resp = resp * torch.where(f <= cutoff, w, torch.zeros_like(w))
    yt = y.movedim(3, -1)
    spec = torch.fft.fft(yt, n=size, dim=-1) * resp
    out = torch.fft.ifft(spec, dim=-1).real[..., :n]
    return out.movedim(-1, 3)


def fbp(y: torch.Tensor, projector: SpectProjector, window: str = "ramp", cutoff: float = 1.0, *,
        attenuation_correction: bool = False) -> torch.Tensor:
    """``x = (π / V) · Aᵀ_ideal (h ∗ y)`` for ``V`` views equally spaced over 180° or 360°.

    Only the geometry of ``projector`` is used: back-projection is along ideal lines, without its
    attenuation or collimator model, as in clinical FBP. Units: ``y`` is the projector's output
    (voxel sums along lines), so the result is on the same scale as the activity that made it.

    ``attenuation_correction``: divide by Chang's first-order factor (Chang 1978), the mean over the
    views of the attenuation from each pixel to the detector,

        c(r) = (1/V) Σ_θ exp(−∫_{r→detector(θ)} μ dl) = Aᵀ_μ 1 / Aᵀ_ideal 1,

    computed with the projector's own attenuation model (its μ map, without the collimator blur), as
    clinical FBP with Chang correction does (``c = 1`` where no path crosses attenuating matter).
    """
    if projector.n_angles < 2:
        raise InputError(f"projector.orbit: FBP needs at least 2 views, found {projector.n_angles}")
    step = abs(projector.orbit.angles_deg[1] - projector.orbit.angles_deg[0])
    arc = projector.n_angles * step
    m = round(arc / 180.0)
    if m < 1 or abs(arc - 180.0 * m) > 1e-6 * arc:
        raise InputError(
            f"projector.orbit: FBP needs equally spaced views over a multiple of 180 deg, found "
            f"{projector.n_angles} views covering {arc:.3f} deg"
        )
    ideal = SpectProjector(projector.grid, projector.orbit, check_input=False)
    # Each line is measured m times over an arc of m·180°: (1/m)·Σ Δθ = π / V.
    x = ideal.A_adjoint(ramp_filter(y, window, cutoff)) * (math.pi / projector.n_angles)
    if not attenuation_correction:
        return x
    mu = getattr(projector, "mu_map", None)
    if mu is None:
        raise InputError("attenuation_correction: the projector has no μ map; set one with set_mu_map")
    attenuated = SpectProjector(projector.grid, projector.orbit, mu_map=mu, check_input=False)
    ones = torch.ones(y.shape, dtype=y.dtype, device=y.device)
    c = attenuated.A_adjoint(ones) / ideal.A_adjoint(ones).clamp_min(torch.finfo(y.dtype).tiny)
    return x / c.clamp_min(1e-6)
