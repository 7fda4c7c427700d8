"""Partial-volume correction by the iterative Yang method (template-based, in image space).

Yang et al. (1996) and its iterative form as used for cardiac blood-pool SPECT: given the
reconstructed image ``I`` and anatomical templates ``ROI_O`` (myocardium, blood pool, liver,
lungs, background: every voxel in one template), repeat for ``k = 0 … K−1``:

* ``m_O = mean(I_k over ROI_O)`` for every template ``O``;
* ``T = Σ_O m_O · ROI_O``, the piecewise-constant model of the activity;
* ``T_recon = MLEM(A·T)``: ``T`` forward-projected with the system model ``A`` and reconstructed
  with the same algorithm and iterations as ``I`` (so ``T_recon`` carries the same resolution
  loss and the same convergence);
* ``F = T / T_recon``, the voxel-wise correction factor;
* ``I_{k+1} = I · F``.

The division is guarded: where ``T_recon`` is at most ``eps`` × its maximum (outside the body,
or a template of zero activity) ``F = 1``, so the result is finite and, like ``I``, non-negative.
Each batch sample is corrected on its own (its own templates and means), so the result does not
depend on the batch. The method needs templates registered to the emission image; shifted or
dilated templates bias it, which is what a template-free network avoids at test time.
"""

from __future__ import annotations

from typing import Any

import torch

from spectdl.errors import InputError
from spectdl.physics import SpectProjector
from spectdl.recon.osem import osem

__all__ = ["iterative_yang", "misregister_templates", "template_means"]


def _check_templates(templates: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    if not isinstance(templates, torch.Tensor):
        raise InputError(f"templates: expected a label tensor [B, 1, *grid], found {type(templates).__name__}")
    if templates.dtype.is_floating_point or templates.dtype == torch.bool or templates.dtype.is_complex:
        raise InputError(f"templates: expected integer labels (one per template, 0 = none), found {templates.dtype}")
    if tuple(templates.shape) != (image.shape[0], 1, *image.shape[2:]):
        raise InputError(f"templates: shape {tuple(templates.shape)}; expected {(image.shape[0], 1, *image.shape[2:])}")
    if bool((templates < 0).any()):
        raise InputError("templates: labels must be >= 0")
    return templates.long()


def template_means(image: torch.Tensor, templates: torch.Tensor) -> torch.Tensor:
    """``[B, L]`` mean of ``image [B, 1, *grid]`` over each label ``1..L−1`` of ``templates``
    (column 0, the unlabelled voxels, is 0; a label absent from a sample has mean 0)."""
    return _means(image, _check_templates(templates, image))


def _means(image: torch.Tensor, lab: torch.Tensor) -> torch.Tensor:
    b = image.shape[0]
    n = int(lab.max()) + 1
    flat_l = lab.reshape(b, -1)
    flat_i = image.reshape(b, -1).to(torch.float64)
    sums = torch.zeros(b, n, dtype=torch.float64, device=image.device).scatter_add_(1, flat_l, flat_i)
    counts = torch.zeros(b, n, dtype=torch.float64, device=image.device).scatter_add_(1, flat_l, torch.ones_like(flat_i))
    means = torch.where(counts > 0, sums / counts.clamp_min(1), torch.zeros_like(sums))
    means[:, 0] = 0.0
    return means


def iterative_yang(image: torch.Tensor, templates: torch.Tensor, projector: SpectProjector, *,
                   recon_iterations: int, recon_subsets: int = 1, pvc_iterations: int = 10,
                   eps: float = 1e-3) -> tuple[torch.Tensor, dict[str, Any]]:
    """Iterative-Yang PVC of ``image [B, 1, *grid]`` (module docstring).

    Args:
        image: the reconstruction ``I`` (non-negative), made by OSEM/MLEM with ``projector``.
        templates: integer labels ``[B, 1, *grid]``, one per template, 0 for voxels outside every
            template (they are left as ``I``: ``F = 1`` there as ``T = 0`` and ``T_recon`` is
            guarded).
        projector: the system model ``A`` of the reconstruction (attenuation included).
        recon_iterations, recon_subsets: those of the reconstruction of ``I`` (MLEM: 1 subset).
        pvc_iterations: ``K``, the number of corrections (the paper: 10).
        eps: the guard, a fraction of ``T_recon``'s maximum per sample.

    Returns:
        ``(I_K, record)``; ``record["means"]`` is ``[K, B, L]``: the template means at each step.
    """
    if not isinstance(image, torch.Tensor) or image.dim() < 4 or image.shape[1] != 1:
        raise InputError("image: expected a reconstruction [B, 1, *grid]")
    if not torch.isfinite(image).all() or bool((image < 0).any()):
        raise InputError("image: expected finite, non-negative values")
    lab = _check_templates(templates, image)
    if isinstance(pvc_iterations, bool) or int(pvc_iterations) != pvc_iterations or pvc_iterations < 1:
        raise InputError(f"pvc_iterations: expected an integer >= 1, found {pvc_iterations!r}")
    if not 0 < eps < 1:
        raise InputError(f"eps: expected a fraction in (0, 1), found {eps!r}")
    b = image.shape[0]
    current = image
    history = []
    for _ in range(int(pvc_iterations)):
        means = _means(current, lab)
        history.append(means)
        model = torch.gather(means.to(image.dtype), 1, lab.reshape(b, -1)).reshape(image.shape)
        with torch.no_grad():
            model_recon = osem(projector.A(model), projector, recon_iterations, recon_subsets)
        floor = eps * model_recon.reshape(b, -1).amax(1).reshape((b,) + (1,) * (image.dim() - 1))
        ok = (model_recon > floor) & (lab > 0)
        factor = torch.where(ok, model / model_recon.clamp_min(torch.finfo(image.dtype).tiny), torch.ones_like(model))
        current = image * factor
    return current, {"means": torch.stack(history)}


def misregister_templates(templates: torch.Tensor, *, shift_vox=None, dilate: dict[int, int] | None = None) -> torch.Tensor:
    """Templates ``[B, 1, *grid]`` moved off the emission image, for the misregistration experiment.

    ``shift_vox``: whole voxels per spatial axis (e.g. ``(1, 0, 0)``); the labels move by that much
    (``out[p] = templates[p − shift]``) and the edge labels fill the vacated voxels. ``dilate``:
    ``{label: n}`` grows that template by ``n`` voxels (a cube of side ``2n + 1``) over its
    neighbours. Shift first, then dilate. Returns int64 labels of the same shape.
    """
    import torch.nn.functional as F

    lab = _check_templates(templates, templates)  # the labels' own checks; any shape [B, 1, *grid]
    nd = lab.dim() - 2
    out = lab
    if shift_vox is not None:
        shift = [int(v) for v in shift_vox]
        if len(shift) != nd or any(int(v) != v for v in shift_vox):
            raise InputError(f"shift_vox: {shift_vox!r}; expected {nd} whole voxel counts")
        idx = [(torch.arange(n, device=lab.device) - d).clamp(0, n - 1) for n, d in zip(lab.shape[2:], shift)]
        out = out[(slice(None), slice(None), *torch.meshgrid(*idx, indexing="ij"))]
    for label, n in (dilate or {}).items():
        if isinstance(n, bool) or int(n) != n or n < 0:
            raise InputError(f"dilate[{label}]: expected a whole number of voxels >= 0, found {n!r}")
        if n == 0:
            continue
        pool = F.max_pool3d if nd == 3 else F.max_pool2d
        grown = pool((out == int(label)).to(torch.float32), 2 * int(n) + 1, stride=1, padding=int(n)) > 0
        out = torch.where(grown, torch.full_like(out, int(label)), out)
    return out
