"""Compiled inner loop of the fused 2-D forward projection (numba, CPU only).

:meth:`SpectProjector._A_fused <spectdl.physics.projector.SpectProjector._A_fused>` runs, for every
view of a chunk, a recursion over the depth planes ``j = 0 … D−1`` (far → near) of the rotated
activity ``a_j`` and the rotated attenuation map ``m_j``:

    surv_j = exp(−Δx (Σ_{k>j} m_k + m_j / 2))          (survival from plane j to the detector)
    acc_0  = R_0 ∗ (a_0 · surv_0)
    acc_j  = S_{j−1} ∗ acc_{j−1} + R_j ∗ (a_j · surv_j)

with ``R_j`` the five-tap residual and ``S_{j−1}`` the three-tap step of the depth blur along the
radial axis (:mod:`spectdl.physics.psf`). In torch that is about sixteen kernel launches per plane,
each a separate pass over ``[views, S, columns]``; the projection was bound by those passes and
their dispatch, not by arithmetic. Here each view's planes are done in one loop whose working set
(one plane of the view) stays in L1. The exponentials stay in torch, one vectorised call over the
chunk: ``h = exp(−Δx·m/2)``, and the kernel forms ``surv_j = h_j · Π_{k>j} h_k²`` by products of
numbers ≤ 1 from the near side (no overflow, no division; a relative rounding of a few 1e-7 in
float32 against the exponential of the sum).

The kernels (:mod:`._numba_kernels`) are compiled on first use, a few seconds, and cached on disk
beside that file (numba's ``cache=True``; ``NUMBA_CACHE_DIR`` where it is not writable). Where numba
is missing, or ``SPECTDL_NO_NUMBA=1`` is set, :func:`available` is false and the projector keeps its
torch loop, which computes the same operator (and is the path on a GPU).
"""

from __future__ import annotations

import contextlib
import functools
import os

import torch

_ENV_OFF = "SPECTDL_NO_NUMBA"


@functools.lru_cache(maxsize=1)
def _numba():
    if os.environ.get(_ENV_OFF, "") not in ("", "0"):
        return None
    try:
        import numba
    except Exception:  # noqa: BLE001 - any import failure means the torch loop
        return None
    return numba


def available() -> bool:
    """Whether the compiled loop can run here (numba imports; ``SPECTDL_NO_NUMBA`` unset)."""
    return _numba() is not None


def takes(t: torch.Tensor) -> bool:
    """Whether the kernels can take ``t``: a CPU float32/float64 tensor, with numba available."""
    return t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64) and available()


@functools.lru_cache(maxsize=1)
def _kernels():
    from spectdl.physics import _numba_kernels

    return _numba_kernels


def rotate(matrix: torch.Tensor, src: torch.Tensor, dst: torch.Tensor, src2: torch.Tensor | None = None,
           dst2: torch.Tensor | None = None, *, accumulate: bool = False) -> None:
    """``dst = matrix @ src`` (``dst += …`` with ``accumulate``) for a CSR ``matrix [n², n²]`` and
    ``[n², C]`` operands (CPU, contiguous), and the same for ``src2, dst2`` in the same pass over
    the matrix; rows in parallel on torch's thread count. The same bytes as torch's CSR product
    (and its ``add_``)."""
    if src2 is None:
        src2, dst2 = src[:, :0], dst[:, :0]
    with _threads():
        _kernels().rotate(matrix.crow_indices().numpy(), matrix.col_indices().numpy(), matrix.values().numpy(),
                          src.numpy(), dst.numpy(), src2.numpy(), dst2.numpy(), accumulate)


def depth_loop(rot_a: torch.Tensor, h: torch.Tensor, base: torch.Tensor, rows: torch.Tensor, turn: torch.Tensor,
               res_k: torch.Tensor, step_k: torch.Tensor, moves: torch.Tensor, out: torch.Tensor) -> None:
    """Run the recursion of the module docstring for every view.

    Args:
        rot_a: ``[Vb, D·S, C]`` the activity rotated into ``Vb`` base views (far → near planes).
        h: ``[Vb, D·S, Cm]`` with ``Cm`` 1 (one μ map for every column) or ``C``: ``exp(−Δx·m/2)``
            of the μ map rotated into the base views.
        base, turn: ``[V]`` int64, view ``v`` is base view ``base[v]`` turned by ``turn[v]`` quarter
            turns; ``rows [4, D·S]`` int64, the base view's row of each row of a turned view.
        res_k: ``[V, D, 3]`` the residual taps ``(c0, c1, c2)`` of every view and plane.
        step_k: ``[V, D−1, 2]`` the step taps ``(middle, side)`` between planes ``j`` and ``j+1``.
        moves: ``[D−1]`` bool, whether step ``j`` moves anything (else it is the identity).
        out: ``[V, S, C]`` written with ``acc_{D−1}`` (before the final base blur).
    """
    with _threads():
        _kernels().depth_loop(*(t.numpy() for t in (rot_a, h, base, rows, turn, res_k, step_k, moves, out)))


@contextlib.contextmanager
def _threads():
    """Run numba's parallel loops on as many threads as torch's (``torch.set_num_threads``, and
    one in the simulation's workers), so that one setting governs both, and leave torch's as it
    was: numba's OpenMP layer (the one it picks beside torch's libgomp, whose threads it then
    shares, measured about 1.4× faster at 128³ than its own pool) resets the OpenMP thread count when it
    first starts, which would undo ``torch.set_num_threads(1)``."""
    nb = _numba()
    n = torch.get_num_threads()
    nb.set_num_threads(max(1, min(n, nb.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)


def _blur_taps(blur) -> tuple:
    """``(res_s, res_z, step_s, step_z, moves, axial)`` of a three-tap :class:`DepthBlur` as the
    kernels take them: residuals ``(c0, c1, c2)``, steps ``(middle, side)``."""
    h = blur.res_s.shape[-1] // 2
    res_s = blur.res_s[..., h:].contiguous()
    step_s = blur.step_s[..., 1:].contiguous()
    axial = blur.res_z is not None
    res_z = blur.res_z[..., h:].contiguous() if axial else res_s
    step_z = blur.step_z[..., 1:].contiguous() if axial else step_s
    moves = torch.as_tensor(blur.moves, dtype=torch.bool)
    return res_s.numpy(), res_z.numpy(), step_s.numpy(), step_z.numpy(), moves.numpy(), axial


def blur_forward(blur, planes: torch.Tensor) -> torch.Tensor:
    """``acc_{D−1}`` of :meth:`DepthBlur.forward <spectdl.physics.psf.DepthBlur.forward>` for
    ``planes [D, G, S, Z]`` (CPU, no autograd, three-tap steps): ``[G, S, Z]``, before the final
    base blur. One parallel loop over the groups (``G``), each plane's passes in cache."""
    out = planes.new_empty(planes.shape[1:])
    with _threads():
        _kernels().blur_forward(planes.contiguous().numpy(), *_blur_taps(blur), out.numpy())
    return out


def blur_adjoint(blur, image: torch.Tensor) -> torch.Tensor:
    """:meth:`DepthBlur.adjoint <spectdl.physics.psf.DepthBlur.adjoint>` of ``image [G, S, Z]`` after
    the final base blur's adjoint: ``[D, G, S, Z]``."""
    out = image.new_empty((blur.n_depth,) + tuple(image.shape))
    with _threads():
        _kernels().blur_adjoint(image.contiguous().numpy(), *_blur_taps(blur), out.numpy())
    return out
