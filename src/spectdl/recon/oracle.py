"""OSEM with every iteration scored against a known truth: the oracle baseline of simulation studies.

A study that compares a network with OSEM on phantoms must say which iteration of OSEM it compares
with. Two answers are common and both are reported by :func:`osem_iterates`:

* the *oracle*: each image keeps the iteration with the lowest mean squared error against its own
  truth (SPECTnet's comparison; only possible when the truth is known);
* a *fixed* iteration, chosen once (e.g. the best mean MSE on a validation set) and applied to every
  test image: the fair comparison, since a scanner cannot know the truth.

OSEM runs once to ``n_iters``; the iterates are scored as they pass, so the cost is one OSEM run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

from spectdl.errors import InputError
from spectdl.physics import SpectProjector
from spectdl.recon.osem import osem


@dataclass
class OsemIterates:
    """What :func:`osem_iterates` kept.

    Attributes:
        mse: ``[B, n_iters]`` float64, the MSE of iteration ``k`` (column ``k − 1``) against the truth.
        best_iteration: ``[B]`` int64, 1-based iteration with the lowest MSE (the first on ties).
        best: ``[B, C, *grid]``, each image at its own best iteration.
        kept: ``{k: [B, C, *grid]}``, every image at iteration ``k`` for each requested ``k``.
    """

    mse: torch.Tensor
    best_iteration: torch.Tensor
    best: torch.Tensor
    kept: dict[int, torch.Tensor] = field(default_factory=dict)


def osem_iterates(
    y: torch.Tensor,
    projector: SpectProjector,
    n_iters: int,
    n_subsets: int,
    truth: torch.Tensor,
    *,
    scale: torch.Tensor | Sequence[float] | None = None,
    keep: Sequence[int] = (),
) -> OsemIterates:
    """OSEM of ``y`` for ``n_iters`` iterations, with the MSE of every iterate against ``truth``.

    Args:
        y, projector, n_iters, n_subsets: as :func:`spectdl.recon.osem`.
        truth: ``[B, C, *grid]``, the images the iterates are compared with.
        scale: ``[B]`` divisors that bring each image into the truth's units before it is scored and
            returned (a simulation's counts per unit activity); ``None``: 1.
        keep: iterations (1-based, ``<= n_iters``) whose images are returned for every case.

    Returns:
        :class:`OsemIterates`; ``MSE_k = mean_voxels((x_k / s − truth)²)``.
    """
    keep = sorted({int(k) for k in keep})
    if any(k < 1 or k > n_iters for k in keep):
        raise InputError(f"keep: iterations {keep}; expected values in 1..{n_iters}")
    b = y.shape[0]
    shape = (b, y.shape[1]) + tuple(projector.grid.shape)
    if not isinstance(truth, torch.Tensor) or tuple(truth.shape) != shape:
        found = tuple(truth.shape) if isinstance(truth, torch.Tensor) else type(truth).__name__
        raise InputError(f"truth: shape {found}; expected {shape}, the shape of the reconstruction")
    s = torch.ones(b, dtype=torch.float64) if scale is None else torch.as_tensor(scale, dtype=torch.float64)
    if s.shape != (b,) or not bool(torch.isfinite(s).all()) or bool((s <= 0).any()):
        raise InputError(f"scale: expected {b} finite values > 0, found {s.tolist()}")
    s = s.to(truth.device).reshape((b,) + (1,) * (len(shape) - 1))
    ref = truth.to(torch.float64)
    mse = torch.zeros(b, n_iters, dtype=torch.float64)
    state: dict = {"best": None, "kept": {}}

    def score(it: int, x: torch.Tensor) -> None:
        img = x.to(torch.float64) / s
        err = (img - ref).square().flatten(1).mean(1).cpu()
        mse[:, it - 1] = err
        out = img.to(x.dtype)
        if state["best"] is None:
            state["best"], state["err"] = out.clone(), err.clone()
        else:
            better = err < state["err"]
            state["best"][better] = out[better]
            state["err"] = torch.where(better, err, state["err"])
        if it in keep:
            state["kept"][it] = out.clone()

    osem(y, projector, n_iters, n_subsets, callback=score)
    best_iteration = mse.argmin(1) + 1
    return OsemIterates(mse, best_iteration, state["best"], state["kept"])
