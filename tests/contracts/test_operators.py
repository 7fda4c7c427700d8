"""Contract: every linear operator of ``spectdl.physics`` has an exact adjoint, in every configuration.

For an operator ``A`` and its adjoint ``Aᵀ`` the defining identity is ``⟨A x, y⟩ = ⟨x, Aᵀ y⟩`` for
all ``x, y``. Each configuration the projector offers (2-D and 3-D grids; no attenuation, one
shared μ map, one μ map per sample; no collimator and every ``Collimator`` preset; CCW, CW, 180°
arcs, start angles, non-circular orbits; batch 1 and 3; view subsets; view chunking; the autograd
path) is checked four independent ways:

1. the operator's own :meth:`SpectProjector.adjointness_test` (non-negative random ``x, y``),
   in float64 (relative error < 1e-10) and float32 (< 1e-5);
2. an independent inner-product test with *signed* Gaussian ``x, y`` from a seeded
   ``torch.Generator`` (signed vectors do not let a wrong operator hide behind a large mean),
   on all views and on view subsets, in float64 and float32;
3. the dense matrices: ``A`` applied to every basis image and ``Aᵀ`` to every basis projection
   must give transposed matrices entry by entry (float64);
4. the vector–Jacobian product autograd computes through ``A`` equals ``Aᵀ y``.

A subset is exposed as the ``subset=`` argument of ``A``/``A_adjoint``; it must also equal the
projector built on ``orbit.subset(index)`` (one way to do one thing). The other linear maps of
``spectdl.physics`` with a forward/adjoint pair, the bilinear rotation bank and the depth-dependent
collimator blur, get the same dense-transpose and inner-product checks.

To add a configuration, add one entry to ``CONFIGS``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from spectdl.geometry import _PRESETS, Collimator, Orbit, VoxelGrid
from spectdl.physics import SpectProjector
from spectdl.physics.psf import DepthBlur
from spectdl.physics.rotation import RotationBank

F64, F32 = torch.float64, torch.float32
# Relative error of ⟨A x, y⟩ against ⟨x, Aᵀ y⟩. The issue asks for < 1e-5 in float64; the pair is
# exact up to round-off (worst measured: 5e-16 in float64, 1.6e-7 in float32), so much tighter
# bounds still leave a wide margin and catch an adjoint that is off by a 1e-6 factor.
TOL = {F64: 1e-10, F32: 1e-5}
# |⟨Ax, y⟩| must not be a cancellation artefact: at least this fraction of ‖Ax‖·‖y‖.
MIN_COSINE = 1e-3

# ---------------------------------------------------------------------------- configurations
G2 = VoxelGrid((12, 12), 4.0)
G3 = VoxelGrid((10, 10, 3), (4.0, 4.0, 5.0))  # anisotropic axial voxels
N_VIEWS = 8

ORBITS = {
    "ccw360": Orbit.circular(N_VIEWS, 60.0),
    "cw360": Orbit.circular(N_VIEWS, 60.0, direction="cw"),
    "ccw180": Orbit.circular(N_VIEWS, 60.0, arc_deg=180.0),
    "cw180-start37": Orbit.circular(N_VIEWS, 55.0, arc_deg=180.0, start_deg=37.0, direction="cw"),
    "start-113": Orbit.circular(N_VIEWS, 60.0, start_deg=-113.0),
    # body contouring: one radius per view, 31.5 .. 59.5 mm (the grid's half-width is 24 mm)
    "noncircular": Orbit(
        tuple(-30.0 + 25.0 * k for k in range(N_VIEWS)), tuple(31.5 + 4.0 * k for k in range(N_VIEWS))
    ),
}
COLLIMATORS = {"none": None, **{name: Collimator.preset(name) for name in ("LEHR", "LEGP", "MEGP")}}


@dataclass(frozen=True)
class OpConfig:
    """One projector configuration.

    ``mu``: "none", "shared" (``B_mu = 1``) or "per_sample" (``B_mu = batch``).
    """

    grid: VoxelGrid
    orbit: str
    collimator: str
    mu: str
    batch: int
    memory_budget_mb: float = 256.0  # tiny values force one view per chunk

    def build(self, dtype=F64, check_input: bool = True) -> SpectProjector:
        mu = None
        if self.mu != "none":
            n_mu = 1 if self.mu == "shared" else self.batch
            gen = torch.Generator().manual_seed(11)
            mu = (0.3 * torch.rand((n_mu, 1) + self.grid.shape, generator=gen, dtype=F64)).to(dtype)
        return SpectProjector(
            self.grid,
            ORBITS[self.orbit],
            COLLIMATORS[self.collimator],
            mu,
            memory_budget_mb=self.memory_budget_mb,
            check_input=check_input,
        )


# The one list of configurations: every value of every axis appears at least once (checked below).
CONFIGS = {
    "2d-ideal-ccw-b1": OpConfig(G2, "ccw360", "none", "none", 1),
    "2d-ideal-cw-b3": OpConfig(G2, "cw360", "none", "none", 3),
    "2d-mu-ccw-b1": OpConfig(G2, "ccw360", "none", "shared", 1),
    "2d-LEHR-ccw-b1": OpConfig(G2, "ccw360", "LEHR", "none", 1),
    "2d-LEHR-mu-per-sample-b3": OpConfig(G2, "ccw360", "LEHR", "per_sample", 3),
    "2d-LEGP-mu-ccw180-b1": OpConfig(G2, "ccw180", "LEGP", "shared", 1),
    "2d-MEGP-mu-shared-cw180-start37-b3": OpConfig(G2, "cw180-start37", "MEGP", "shared", 3),
    "2d-LEHR-mu-noncircular-b3": OpConfig(G2, "noncircular", "LEHR", "per_sample", 3),
    "2d-MEGP-mu-start-113-chunked-b3": OpConfig(G2, "start-113", "MEGP", "per_sample", 3, 1e-4),
    "3d-ideal-ccw-b1": OpConfig(G3, "ccw360", "none", "none", 1),
    "3d-mu-shared-cw-b3": OpConfig(G3, "cw360", "none", "shared", 3),
    "3d-LEHR-mu-per-sample-b3": OpConfig(G3, "ccw360", "LEHR", "per_sample", 3),
    "3d-LEGP-ccw180-b1": OpConfig(G3, "ccw180", "LEGP", "none", 1),
    "3d-LEGP-mu-cw360-b3": OpConfig(G3, "cw360", "LEGP", "shared", 3),
    "3d-MEGP-mu-per-sample-cw180-start37-b3": OpConfig(G3, "cw180-start37", "MEGP", "per_sample", 3),
    "3d-LEHR-mu-noncircular-b1": OpConfig(G3, "noncircular", "LEHR", "shared", 1),
    "3d-MEGP-mu-noncircular-chunked-b3": OpConfig(G3, "noncircular", "MEGP", "per_sample", 3, 1e-4),
    "3d-ideal-start-113-chunked-b1": OpConfig(G3, "start-113", "none", "none", 1, 1e-4),
}

SUBSETS = {
    "even": [0, 2, 4, 6],
    "unordered": [5, 1, 6],
    "single-last": [N_VIEWS - 1],
    "repeated": [3, 3, 0],
    "tensor": torch.tensor([7, 2, 4]),
}

NAMES = list(CONFIGS)
DTYPES = pytest.mark.parametrize("dtype", [F64, F32], ids=["f64", "f32"])


def _signed(shape, gen, dtype):
    return torch.randn(shape, generator=gen, dtype=F64).to(dtype)


def _check_adjoint_pair(fwd, adj, x, noise, dtype, label):
    """``⟨A x, y⟩`` against ``⟨x, Aᵀ y⟩`` (accumulated in float64) for signed ``x`` and
    ``y = noise + ½·(‖noise‖/‖Ax‖)·Ax``.

    Independent signed vectors make ``⟨Ax, y⟩`` a sum of terms of random sign, so it can be tiny
    next to ``‖Ax‖·‖y‖`` and its *relative* error meaningless (a 1e-3 cosine turns float64
    round-off into 1e-13 and float32 round-off into 1e-4). The component along ``Ax`` keeps the
    cosine near 0.45 while ``y`` stays a random signed vector; the identity must hold for every
    ``y``. Returns ``(relative error, error / (‖Ax‖·‖y‖))``.
    """
    ax = fwd(x)
    assert float(ax.abs().max()) > 0, f"{label}: A x is identically 0, the test has no content"
    y = (noise.double() + 0.5 * noise.double().norm() / ax.double().norm() * ax.double()).to(dtype)
    aty = adj(y)
    assert ax.shape == y.shape and aty.shape == x.shape, f"{label}: shapes {ax.shape}, {aty.shape}"
    assert ax.dtype == aty.dtype == dtype
    lhs = float((ax.double() * y.double()).sum())
    rhs = float((x.double() * aty.double()).sum())
    scale = float(ax.double().norm() * y.double().norm())
    degenerate = f"{label}: degenerate draw, ⟨Ax,y⟩={lhs:.3g}, ‖Ax‖‖y‖={scale:.3g}"
    assert abs(lhs) > MIN_COSINE * scale, degenerate
    rel = abs(lhs - rhs) / max(abs(lhs), abs(rhs))
    assert rel < TOL[dtype], f"{label}: ⟨Ax,y⟩={lhs!r}, ⟨x,Aᵀy⟩={rhs!r}, relative error {rel:.3g}"
    return rel, abs(lhs - rhs) / scale


def test_every_axis_value_is_covered():
    """A new preset, orbit or μ mode must get at least one entry in ``CONFIGS``."""
    fields = ("orbit", "collimator", "mu", "batch")
    used = {field: {getattr(c, field) for c in CONFIGS.values()} for field in fields}
    assert used["orbit"] == set(ORBITS)
    assert used["collimator"] == {"none", *_PRESETS}, "every Collimator.preset needs an entry"
    assert set(_PRESETS) <= set(COLLIMATORS)
    assert used["mu"] == {"none", "shared", "per_sample"}
    assert used["batch"] == {1, 3}
    assert {c.grid.ndim for c in CONFIGS.values()} == {2, 3}
    assert any(c.memory_budget_mb < 1 for c in CONFIGS.values())
    # Chunking really happens in the chunked entries (one view per chunk).
    cfg = CONFIGS["3d-MEGP-mu-noncircular-chunked-b3"]
    assert len(cfg.build()._chunks(list(range(N_VIEWS)), cfg.batch, 8)) == N_VIEWS


@DTYPES
@pytest.mark.parametrize("name", NAMES)
def test_builtin_adjointness_test(name, dtype):
    cfg = CONFIGS[name]
    gen = torch.Generator().manual_seed(3)
    res = cfg.build(dtype).adjointness_test(batch=cfg.batch, generator=gen, dtype=dtype)
    assert res.ax_y > 0 and res.x_aty > 0
    assert res.relative_error < TOL[dtype], res
    # Its reported error is what it says: recompute from its own two numbers.
    own = abs(res.ax_y - res.x_aty) / max(res.ax_y, res.x_aty)
    assert res.relative_error == pytest.approx(own, rel=1e-12, abs=1e-300)


@DTYPES
@pytest.mark.parametrize("name", NAMES)
def test_signed_random_adjointness(name, dtype):
    cfg = CONFIGS[name]
    P = cfg.build(dtype, check_input=False)  # signed activity is only refused by the input check
    gen = torch.Generator().manual_seed(4)
    x = _signed((cfg.batch, 2) + cfg.grid.shape, gen, dtype)  # 2 channels: C is a batch axis too
    noise = _signed(P.projection_shape(cfg.batch, 2), gen, dtype)
    _check_adjoint_pair(P.A, P.A_adjoint, x, noise, dtype, name)


@DTYPES
@pytest.mark.parametrize("subset", list(SUBSETS))
@pytest.mark.parametrize("name", NAMES)
def test_subset_adjointness(name, subset, dtype):
    cfg = CONFIGS[name]
    idx = SUBSETS[subset]
    k = len(idx)
    P = cfg.build(dtype, check_input=False)
    gen = torch.Generator().manual_seed(5)
    x = _signed((cfg.batch, 1) + cfg.grid.shape, gen, dtype)
    noise = _signed(P.projection_shape(cfg.batch, 1, n_views=k), gen, dtype)
    _check_adjoint_pair(
        lambda v: P.A(v, subset=idx),
        lambda w: P.A_adjoint(w, subset=idx),
        x,
        noise,
        dtype,
        f"{name}[{subset}]",
    )
    y = noise
    ax, aty = P.A(x, subset=idx), P.A_adjoint(y, subset=idx)
    # The subset operator is the full operator's rows (and its adjoint scatters into those views).
    full = P.A(x)
    rows = torch.as_tensor(idx)
    torch.testing.assert_close(ax, full[:, :, rows])
    padded = torch.zeros_like(full)
    padded.index_add_(2, rows, y)  # a repeated view contributes twice
    rtol, atol = (1e-4, 1e-5) if dtype == F32 else (1e-10, 1e-12)
    torch.testing.assert_close(aty, P.A_adjoint(padded), rtol=rtol, atol=atol)


@pytest.mark.parametrize("name", NAMES)
def test_subset_equals_projector_on_sub_orbit(name):
    """``A(x, subset=idx)`` and a projector built on ``orbit.subset(idx)`` are one operator."""
    cfg = CONFIGS[name]
    idx = [1, 4, 6]  # Orbit.subset keeps the orbit's direction, so its views must stay in order
    P = cfg.build()
    sub = SpectProjector(cfg.grid, P.orbit.subset(idx), P.collimator, P.mu_map)
    gen = torch.Generator().manual_seed(6)
    x = torch.rand((cfg.batch, 1) + cfg.grid.shape, generator=gen, dtype=F64)
    y = torch.rand(P.projection_shape(cfg.batch, 1, n_views=len(idx)), generator=gen, dtype=F64)
    torch.testing.assert_close(P.A(x, subset=idx), sub.A(x), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(P.A_adjoint(y, subset=idx), sub.A_adjoint(y), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(
        P.sensitivity(cfg.batch, subset=idx, dtype=F64), sub.sensitivity(cfg.batch, dtype=F64)
    )


@pytest.mark.parametrize("name", NAMES)
def test_dense_matrices_are_transposes(name):
    """Every entry: ``(Aᵀ)_{ij} = A_{ji}``, one matrix per batch item (its own μ map)."""
    cfg = CONFIGS[name]
    P = cfg.build()
    n_vox = int(np.prod(cfg.grid.shape))
    proj_shape = P.projection_shape()[2:]
    n_proj = int(np.prod(proj_shape))
    # Basis vectors travel on the channel axis, so every batch item keeps its own μ map.
    ex = torch.eye(n_vox, dtype=F64).reshape((1, n_vox) + cfg.grid.shape)
    ey = torch.eye(n_proj, dtype=F64).reshape((1, n_proj) + proj_shape)
    ex, ey = ex.expand((cfg.batch,) + ex.shape[1:]), ey.expand((cfg.batch,) + ey.shape[1:])
    a = P.A(ex.contiguous()).reshape(cfg.batch, n_vox, n_proj)  # a[b, j, i] = A_b[i, j]
    at = P.A_adjoint(ey.contiguous()).reshape(cfg.batch, n_proj, n_vox)  # at[b, i, j] = Aᵀ_b[j, i]
    assert float(a.abs().max()) > 0
    err = float((a.transpose(1, 2) - at).abs().max() / a.abs().max())
    assert err < 1e-12, f"{name}: max |A − (Aᵀ)ᵀ| / max |A| = {err:.3g}"
    if cfg.mu == "per_sample":  # and the per-sample μ maps really give different operators
        assert float((a[0] - a[1]).abs().max()) > 1e-3 * float(a.abs().max())


@pytest.mark.parametrize("name", NAMES)
def test_autograd_vjp_is_the_adjoint(name):
    """The autograd path of ``A`` (no in-place buffers) is the same operator, and its VJP is ``Aᵀ``."""
    cfg = CONFIGS[name]
    P = cfg.build()
    gen = torch.Generator().manual_seed(7)
    x = torch.rand((cfg.batch, 1) + cfg.grid.shape, generator=gen, dtype=F64).requires_grad_(True)
    y = torch.randn(P.projection_shape(cfg.batch), generator=gen, dtype=F64)
    ax = P(x)
    with torch.no_grad():
        torch.testing.assert_close(ax, P.A(x.detach()), rtol=1e-12, atol=1e-13)
    (ax * y).sum().backward()
    torch.testing.assert_close(x.grad, P.A_adjoint(y), rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------- the building blocks
@pytest.mark.parametrize("n", [7, 10])
def test_rotation_bank_adjoint_is_the_transpose(n):
    angles = (0.0, 17.0, 90.0, 135.0, 200.5, -73.0)
    bank = RotationBank(n, angles)
    gen = torch.Generator().manual_seed(8)
    for dtype in (F64, F32):
        fwd, adj = bank.matrices("cpu", dtype)
        assert len(fwd) == len(adj) == len(angles)
        for a, f, t in zip(angles, fwd, adj):
            fd, td = f.to_dense(), t.to_dense()
            assert torch.equal(td, fd.T), f"angle {a}: adjoint matrix is not the transpose"
            x = _signed((n * n, 3), gen, dtype)
            noise = _signed((n * n, 3), gen, dtype)
            label = f"rotation n={n} angle={a}"
            fwd_f, adj_f = (lambda v: torch.sparse.mm(f, v)), (lambda w: torch.sparse.mm(t, w))
            _check_adjoint_pair(fwd_f, adj_f, x, noise, dtype, label)


def _blur_cases():
    gen = np.random.default_rng(9)  # seeded; numpy is only used to draw the variance profiles
    cases = {}
    for label, scale in (("3tap", 0.3), ("gauss", 4.0)):
        d, g = 6, 4
        inc = gen.uniform(0.0, scale, size=(g, d))
        var = np.cumsum(inc[:, ::-1], axis=1)[:, ::-1] + 0.2  # decreasing far → near, as the projector's
        cases[f"{label}-2d"] = (var, None, 1)
        cases[f"{label}-3d"] = (var, 0.5 * var, 5)
    return cases


BLUR_CASES = _blur_cases()


@pytest.mark.parametrize("case", list(BLUR_CASES))
def test_depth_blur_adjoint(case):
    var_s, var_z, nz = BLUR_CASES[case]
    g, d = var_s.shape
    s = 9
    blur = DepthBlur.from_variances(var_s, var_z, dtype=F64)
    if case.startswith("3tap"):
        assert blur.step_s.shape[-1] == 3  # the shifted-add branch
    else:
        assert blur.step_s.shape[-1] > 3  # the grouped-convolution branch
    n_in = d * g * s * nz
    planes = torch.eye(n_in, dtype=F64).reshape(n_in, d, g, s, nz)
    fwd = torch.stack([blur.forward(p) for p in planes])  # [n_in, G, S, Z]
    n_out = g * s * nz
    images = torch.eye(n_out, dtype=F64).reshape(n_out, g, s, nz)
    adj = torch.stack([blur.adjoint(im) for im in images])  # [n_out, D, G, S, Z]
    m = fwd.reshape(n_in, n_out)
    mt = adj.reshape(n_out, n_in)
    err = float((m.T - mt).abs().max() / m.abs().max())
    assert err < 1e-12, f"{case}: max |B − (Bᵀ)ᵀ| / max |B| = {err:.3g}"
    # The kernels of selected groups (views × batch, as the projector uses them) stay matched.
    sel = blur.select(torch.tensor([2, 0]), 2)
    gen = torch.Generator().manual_seed(10)
    p = torch.randn(d, 4, s, nz, generator=gen, dtype=F64)
    im = torch.randn(4, s, nz, generator=gen, dtype=F64)
    _check_adjoint_pair(sel.forward, sel.adjoint, p, im, F64, f"{case} selected")
