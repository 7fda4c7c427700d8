"""Rotation of a transaxial grid into a detector frame, as an explicit sparse matrix.

For detector angle θ the detector frame has a radial axis ``u = (cos θ, sin θ)`` and a depth axis
``n = (−sin θ, cos θ)`` pointing from the object to the detector. A voxel at ``(x, y)`` lands at
``s = x cos θ + y sin θ``, ``d = −x sin θ + y cos θ``. Its activity is *pushed* (splatted) onto the
four nearest detector-frame pixels with bilinear weights: every column of the matrix sums to one,
so the total activity and its centroid are preserved exactly for voxels inside the circle
inscribed in the grid. The adjoint is the transposed matrix, so forward and back-projection form
an exactly matched pair.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import torch


def rotation_matrix_coo(n: int, angle_deg: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear push weights for one angle on an ``n × n`` grid with square pixels.

    Returns ``(rows, cols, vals)`` of the ``[n·n, n·n]`` matrix mapping source index
    ``ix·n + iy`` to detector-frame index ``id·n + is`` (depth-major, so that the rotated image is
    laid out as ``[depth, radial]``).
    """
    theta = np.deg2rad(angle_deg)
    c, s = np.cos(theta), np.sin(theta)
    centre = (n - 1) / 2.0
    ix, iy = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    x = ix.ravel() - centre
    y = iy.ravel() - centre
    fs = x * c + y * s + centre
    fd = -x * s + y * c + centre
    # Snap round-off so that axis-aligned angles give exact permutations.
    fs = np.where(np.abs(fs - np.round(fs)) < 1e-9, np.round(fs), fs)
    fd = np.where(np.abs(fd - np.round(fd)) < 1e-9, np.round(fd), fd)
    s0 = np.floor(fs).astype(np.int64)
    d0 = np.floor(fd).astype(np.int64)
    ws1 = fs - s0
    wd1 = fd - d0
    src = np.arange(n * n, dtype=np.int64)
    rows, cols, vals = [], [], []
    for ds, dd, w in (
        (0, 0, (1 - ws1) * (1 - wd1)),
        (1, 0, ws1 * (1 - wd1)),
        (0, 1, (1 - ws1) * wd1),
        (1, 1, ws1 * wd1),
    ):
        si, di = s0 + ds, d0 + dd
        ok = (si >= 0) & (si < n) & (di >= 0) & (di < n) & (w > 0)
        rows.append(di[ok] * n + si[ok])
        cols.append(src[ok])
        vals.append(w[ok])
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)


class RotationBank:
    """Sparse CSR rotation matrices (and transposes) for a list of angles, built once and cached
    per device and dtype. :meth:`shared` returns one bank per ``(n, angles)`` for the whole process,
    so projectors of the same geometry (one per batch of μ maps, FBP's ideal projector) reuse it."""

    def __init__(self, n: int, angles_deg) -> None:
        self.n = int(n)
        self.angles_deg = tuple(float(a) for a in angles_deg)
        self._cache: dict[tuple, tuple[list, list]] = {}

    @staticmethod
    def shared(n: int, angles_deg) -> "RotationBank":
        return _shared_bank(int(n), tuple(float(a) for a in angles_deg))

    def matrices(self, device, dtype) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        key = (torch.device(device), dtype)
        if key not in self._cache:
            from scipy import sparse

            nn = self.n * self.n
            fwd, adj = [], []
            # The COO triplets are rebuilt here (milliseconds per angle) rather than kept: at 256²
            # they would hold 0.75 GB for 120 views beside the matrices themselves.
            for rows, cols, vals in (rotation_matrix_coo(self.n, a) for a in self.angles_deg):
                # scipy sorts the (unique) entries into CSR in milliseconds; torch's coalesce of the
                # same COO tensor took ~0.1 s per angle, most of a projector's set-up time.
                m = sparse.csr_matrix((vals, (rows, cols)), shape=(nn, nn))
                fwd.append(_torch_csr(m, device, dtype))
                adj.append(_torch_csr(m.T.tocsr(), device, dtype))
            self._cache[key] = (fwd, adj)
        return self._cache[key]


def _torch_csr(m, device, dtype) -> torch.Tensor:
    m.sort_indices()
    # 32-bit indices (n² < 2³¹ for any grid up to 46,340²): a third less memory than 64-bit ones,
    # and torch's CPU product with them measured 1.5–1.9× faster here, with identical results.
    index = torch.int32 if m.shape[0] < 2**31 and m.nnz < 2**31 else torch.int64
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(torch.as_tensor(m.indptr, dtype=index),
                                       torch.as_tensor(m.indices, dtype=index),
                                       torch.as_tensor(m.data, dtype=dtype), size=m.shape,
                                       check_invariants=False).to(device)


@functools.lru_cache(maxsize=4)
def _shared_bank(n: int, angles_deg: tuple[float, ...]) -> RotationBank:
    return RotationBank(n, angles_deg)
