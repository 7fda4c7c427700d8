"""Ordered-subsets expectation maximisation (Hudson & Larkin 1994); ML-EM is the one-subset case.

For subset ``S`` of the views, with measured counts ``y``, additive term ``s`` (scatter) and
system matrix ``A`` (attenuation and collimator response included through the projector):

    x ← x / (A_Sᵀ 1) · A_Sᵀ [ y_S / (A_S x + s_S) ]

Each sub-iteration keeps ``x ≥ 0`` and, for one subset, never decreases the Poisson likelihood.
"""

from __future__ import annotations

from typing import Callable

import torch

from spectdl.errors import InputError
from spectdl.physics import SpectProjector


def subsets(n_angles: int, n_subsets: int) -> list[list[int]]:
    """Interleaved subsets: subset ``k`` holds views ``k, k + n_subsets, …``."""
    if not 1 <= n_subsets <= n_angles:
        raise InputError(f"n_subsets: expected 1..{n_angles} (the number of views), found {n_subsets}")
    return [list(range(k, n_angles, n_subsets)) for k in range(n_subsets)]


def poisson_nll(y: torch.Tensor, ybar: torch.Tensor) -> torch.Tensor:
    """Poisson negative log-likelihood per sample, without the ``log y!`` constant: ``Σ ȳ − y log ȳ``."""
    eps = torch.finfo(ybar.dtype).tiny
    terms = ybar - torch.where(y > 0, y * torch.log(ybar.clamp_min(eps)), torch.zeros_like(y))
    return terms.reshape(y.shape[0], -1).sum(1)


def osem(
    y: torch.Tensor,
    projector: SpectProjector,
    n_iters: int,
    n_subsets: int,
    additive: torch.Tensor | None = None,
    x0: torch.Tensor | None = None,
    callback: Callable[[int, torch.Tensor], object] | None = None,
) -> torch.Tensor:
    """OSEM reconstruction.

    Args:
        y: measured counts ``[B, C, n_angles, n_radial(, n_axial)]``, non-negative.
        projector: the system model; its ``mu_map`` and collimator are used.
        n_iters: full passes over all subsets.
        n_subsets: number of interleaved subsets (1 gives ML-EM).
        additive: expected scatter (and randoms) counts, same shape as ``y``, or ``None``.
        x0: start image ``[B, C, *grid]`` (> 0 where activity may be); uniform ones by default.
        callback: called as ``callback(iteration, x)`` after each full iteration (1-based), so a
            study can keep, for example, the iterate with the lowest error.

    Returns:
        The non-negative image ``[B, C, *grid]`` after ``n_iters`` iterations.
    """
    if not isinstance(y, torch.Tensor):
        raise InputError(f"y: expected a torch.Tensor, found {type(y).__name__}")
    expected = projector.projection_shape(y.shape[0], y.shape[1] if y.dim() > 1 else 1)
    if tuple(y.shape) != expected:
        raise InputError(f"y: shape {tuple(y.shape)} does not match the projector; expected {expected}")
    if not torch.isfinite(y).all() or bool((y < 0).any()):
        raise InputError("y: measured counts must be finite and >= 0")
    if int(n_iters) < 1:
        raise InputError(f"n_iters: expected >= 1, found {n_iters}")
    if additive is not None:
        if tuple(additive.shape) != tuple(y.shape):
            raise InputError(f"additive: shape {tuple(additive.shape)} differs from y {tuple(y.shape)}")
        if not torch.isfinite(additive).all() or bool((additive < 0).any()):
            raise InputError("additive: the scatter estimate must be finite and >= 0")
    b, c = y.shape[:2]
    shape = (b, c) + projector.grid.shape
    if x0 is None:
        x = torch.ones(shape, dtype=y.dtype, device=y.device)
    else:
        if tuple(x0.shape) != shape:
            raise InputError(f"x0: shape {tuple(x0.shape)}; expected {shape}")
        if bool((x0 < 0).any()):
            raise InputError("x0: start image must be >= 0")
        x = x0.clone()
    parts = subsets(projector.n_angles, int(n_subsets))
    views_dim = 2
    sens = []
    for idx in parts:
        ones = torch.ones(projector.projection_shape(b, c, len(idx)), dtype=y.dtype, device=y.device)
        sens.append(projector.A_adjoint(ones, idx))
    with torch.no_grad():
        for it in range(1, int(n_iters) + 1):
            for idx, s in zip(parts, sens):
                sel = torch.as_tensor(idx, device=y.device)
                y_s = y.index_select(views_dim, sel)
                ybar = projector.A(x, idx)
                if additive is not None:
                    ybar = ybar + additive.index_select(views_dim, sel)
                ratio = torch.where(ybar > 0, y_s / ybar.clamp_min(torch.finfo(y.dtype).tiny), torch.zeros_like(y_s))
                back = projector.A_adjoint(ratio, idx)
                x = torch.where(s > 0, x * back / s.clamp_min(torch.finfo(y.dtype).tiny), torch.zeros_like(x))
            if callback is not None:
                callback(it, x)
    return x


def mlem(
    y: torch.Tensor,
    projector: SpectProjector,
    n_iters: int,
    additive: torch.Tensor | None = None,
    x0: torch.Tensor | None = None,
    callback: Callable[[int, torch.Tensor], object] | None = None,
) -> torch.Tensor:
    """ML-EM: :func:`osem` with one subset."""
    return osem(y, projector, n_iters, 1, additive=additive, x0=x0, callback=callback)
