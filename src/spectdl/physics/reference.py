"""The per-view projector of spectdl up to issue 14, kept as the baseline of the fast path.

:class:`ReferenceProjector` is a :class:`~spectdl.physics.SpectProjector` whose forward projection
and attenuation factors are computed as they were before the fused forward path: one sparse
rotation per view and image, attenuation sums on the permuted ``[D, B, S, Z]`` layout, and the
depth blur of :class:`~spectdl.physics.psf.DepthBlur`. It is the same linear operator (the tests
compare the two to float tolerance) and ``benchmarks/bench_simulate.py`` times it in the same run
as the baseline of its ratios. Not for new code: its forward projection is 2-3 times slower.
"""

from __future__ import annotations

import torch

from spectdl.physics.projector import SpectProjector

__all__ = ["ReferenceProjector"]


class ReferenceProjector(SpectProjector):
    """:class:`SpectProjector` with the per-view forward path of before issue 14 (same arguments)."""

    fused_forward = False

    def _attenuation(self, view: int, device, dtype) -> torch.Tensor | None:
        """``[D, B_mu, S, Z]`` survival probabilities for view ``view`` (far → near planes)."""
        if self.mu_map is None:
            return None
        cached = self._att_cache.get(view)
        if cached is not None and cached.device == torch.device(device) and cached.dtype == dtype:
            return cached
        mu = self.mu_map.to(device=device, dtype=dtype)
        mu5 = mu if self.is_3d else mu.unsqueeze(-1)
        n, nz, bm = self.grid.shape[0], mu5.shape[-1], mu5.shape[0]
        flat = mu5[:, 0].permute(1, 2, 0, 3).reshape(n * n, bm * nz)
        fwd, _ = self._rot.matrices(device, dtype)
        rot = torch.sparse.mm(fwd[view], flat).reshape(n, n, bm, nz).permute(0, 2, 1, 3)  # [D, Bm, S, Z]
        dx_cm = self.grid.voxel_size_mm[0] / 10.0
        # Path from each plane to the detector: planes nearer than it, plus half of its own voxel.
        # Σ_{j' > j} μ_j' + μ_j / 2  =  Σ_all − cumsum_j + μ_j / 2
        beyond = rot.sum(0, keepdim=True) - torch.cumsum(rot, 0) + 0.5 * rot
        att = torch.exp(beyond.mul_(-dx_cm))
        if self.cache_attenuation:
            self._att_cache[view] = att
        return att
