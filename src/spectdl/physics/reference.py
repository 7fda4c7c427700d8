"""The per-view projector of spectdl up to issue 14, kept as the baseline of the fast path.

:class:`ReferenceProjector` is a :class:`~spectdl.physics.SpectProjector` whose forward projection
and attenuation factors are computed as they were before the fused forward path: one sparse
rotation per view and image, attenuation sums on the permuted ``[D, B, S, Z]`` layout, and the
depth blur of :class:`~spectdl.physics.psf.DepthBlur`. It is the same linear operator (the tests
compare the two to float tolerance) and ``benchmarks/bench_physics.py`` and
``benchmarks/bench_simulate.py`` time it in the same run as the baseline of their ratios. Not for
new code: it is several times slower.
"""

from __future__ import annotations

from typing import Sequence

import torch

from spectdl.physics.projector import SpectProjector

__all__ = ["ReferenceProjector"]


class ReferenceProjector(SpectProjector):
    """:class:`SpectProjector` with the per-view forward path of before issue 14 (same arguments)."""

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

    # ---------------------------------------------------------------- the operator
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
        flat = x5.permute(2, 3, 0, 1, 4).reshape(n * n, nb * nz)
        # Without autograd, views are written straight into one preallocated buffer per chunk.
        inplace = not (torch.is_grad_enabled() and (x.requires_grad or (self.mu_map is not None and self.mu_map.requires_grad)))
        out = []
        for chunk in self._chunks(idx, nb, x.element_size()):
            stack = x.new_empty((n, len(chunk) * nb, n, nz)) if inplace else None
            planes = []
            for k, v in enumerate(chunk):
                rot = torch.sparse.mm(fwd[v], flat).view(n, n, b, c, nz).permute(0, 2, 3, 1, 4)  # [D, B, C, S, Z]
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
                img = blur.select(sel, nb).forward(stack)
            out.append(img.reshape(len(chunk), b, c, n, nz))
        y = torch.cat(out, 0).permute(1, 2, 0, 3, 4)
        return y if self.is_3d else y[..., 0]
