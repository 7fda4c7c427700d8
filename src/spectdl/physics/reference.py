"""The per-view projector of spectdl up to issue 14, kept as the baseline of the fast path.

:class:`ReferenceProjector` is a :class:`~spectdl.physics.SpectProjector` whose forward projection
and attenuation factors are computed as they were before the fused forward path: one sparse
rotation per view and image, attenuation sums on the permuted ``[D, B, S, Z]`` layout, and the
depth blur of :class:`~spectdl.physics.psf.DepthBlur` in torch operations (not its compiled loop). It is the same linear operator (the tests
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
    #: and the depth blur in torch operations, not compiled (so that the tests compare against a
    #: path that shares no compiled code with the fast one)
    compiled_loop = False

    def _attenuation_factors(self, view: int, device, dtype) -> torch.Tensor:
        """``[D, B_mu, S, Z]`` survival probabilities for view ``view``, on the permuted layout."""
        rot = self._rotated_mu(view, device, dtype).permute(0, 2, 1, 3)  # [D, Bm, S, Z]
        dx_cm = self.grid.voxel_size_mm[0] / 10.0
        # Path from each plane to the detector: planes nearer than it, plus half of its own voxel.
        # Σ_{j' > j} μ_j' + μ_j / 2  =  Σ_all − cumsum_j + μ_j / 2
        beyond = rot.sum(0, keepdim=True) - torch.cumsum(rot, 0) + 0.5 * rot
        return torch.exp(beyond.mul_(-dx_cm))
