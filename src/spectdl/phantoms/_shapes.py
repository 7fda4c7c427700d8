"""Small shape helpers shared by the phantoms: edge coverage and raw random draws per sample."""

from __future__ import annotations

import torch

from spectdl.phantoms.base import sample_generator


def edge_coverage(distance_mm: torch.Tensor, pixel_mm: float, antialias: bool) -> torch.Tensor:
    """Fraction of a pixel inside a shape, from the signed distance of its centre to the edge.

    ``distance_mm < 0`` inside. With ``antialias`` the fraction ramps linearly over one pixel
    (``clamp(0.5 − d/p, 0, 1)``, exact for a straight edge crossing a pixel side-on); without it
    the pixel is in or out by its centre.
    """
    if antialias:
        return (0.5 - distance_mm / pixel_mm).clamp(0.0, 1.0)
    return (distance_mm <= 0).to(distance_mm.dtype)


def raw_draws(seeds: list[int], n_uniform: int, n_normal: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, n_uniform]`` U(0, 1) and ``[B, n_normal]`` N(0, 1) float64 draws, row ``b`` from seed ``b``.

    Each phantom maps these rows to its parameters with vectorised arithmetic, so a sample's
    parameters depend only on its own seed (the batch-equivalence guarantee).
    """
    u, z, _ = raw_draws_with_extra(seeds, n_uniform, n_normal, 0)
    return u, z


def raw_draws_with_extra(seeds: list[int], n_uniform: int, n_normal: int,
                         n_extra: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`raw_draws` followed by ``[B, n_extra]`` more U(0, 1) draws from each sample's generator:
    the first two blocks are drawn first, so they are bit for bit those of :func:`raw_draws` (a
    phantom can add parameters without changing the samples of its existing options)."""
    u = torch.empty(len(seeds), n_uniform, dtype=torch.float64)
    z = torch.empty(len(seeds), n_normal, dtype=torch.float64)
    w = torch.empty(len(seeds), n_extra, dtype=torch.float64)
    for b, s in enumerate(seeds):
        g = sample_generator(s)
        u[b] = torch.rand(n_uniform, generator=g, dtype=torch.float64)
        if n_normal:
            z[b] = torch.randn(n_normal, generator=g, dtype=torch.float64)
        if n_extra:
            w[b] = torch.rand(n_extra, generator=g, dtype=torch.float64)
    return u, z, w
