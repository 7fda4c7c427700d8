"""The fused forward path of SpectProjector against the per-view path it replaced (ReferenceProjector).

Both compute the same operator, so on the same inputs they agree to float rounding; the fused path's
own adjointness is checked against the unchanged back-projector. In 2-D the fused path's depth
recursion runs compiled (numba, :mod:`spectdl.physics._compiled`) where it applies; every 2-D check
runs with it (``compiled``) and with the torch loop it replaces (``torch``).
"""

import pytest
import torch

from spectdl.geometry import Collimator, Orbit, VoxelGrid
from spectdl.physics import SpectProjector, _compiled
from spectdl.physics.reference import ReferenceProjector

LEHR = Collimator.preset("LEHR")
NONCIRCULAR = Orbit(tuple(-45.0 + 12.0 * k for k in range(15)), tuple(100.0 + 3.0 * k for k in range(15)))

# grid, orbit, collimator, μ batch (0: none), batch, channels
CASES = {
    "2d-lehr-mu-per-sample": (VoxelGrid((32, 32), 3.0), Orbit.circular(24, 150.0), LEHR, 3, 3, 1),
    "2d-lehr-shared-mu-2ch": (VoxelGrid((32, 32), 3.0), Orbit.circular(20, 150.0), LEHR, 1, 2, 2),
    "2d-noncircular-mu": (VoxelGrid((24, 24), 4.0), NONCIRCULAR, LEHR, 2, 2, 1),
    "2d-lehr-no-mu": (VoxelGrid((32, 32), 3.0), Orbit.circular(18, 150.0, 180.0, 30.0, "cw"), LEHR, 0, 2, 1),
    "2d-ideal-mu": (VoxelGrid((24, 24), 4.0), Orbit.circular(16, 120.0), None, 2, 2, 1),
    "3d-lehr-mu": (VoxelGrid((20, 20, 6), (4.0, 4.0, 5.0)), Orbit.circular(12, 110.0), LEHR, 2, 2, 1),
    "3d-noncircular-megp-shared-mu": (VoxelGrid((20, 20, 4), 4.0), NONCIRCULAR, Collimator.preset("MEGP"), 1, 2, 2),
}


def _inputs(grid, n_mu, batch, channels, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((batch, channels) + grid.shape, generator=g, dtype=dtype)
    mu = None if n_mu == 0 else 0.15 * torch.rand((n_mu, 1) + grid.shape, generator=g, dtype=dtype)
    return x, mu


def _pair(grid, orbit, coll, mu, compiled=True, **kw):
    kw.setdefault("cache_attenuation", False)
    new = SpectProjector(grid, orbit, coll, mu, **kw)
    new.compiled_loop = compiled
    return new, ReferenceProjector(grid, orbit, coll, mu, **kw)


def test_numba_is_installed_so_the_compiled_path_is_tested():
    assert _compiled.available(), "numba is a dependency; without it the compiled loop is never tested"


# The compiled loop is for 2-D projections with a collimator blur.
PATHS = [(name, path) for name, case in CASES.items() for path in ("compiled", "torch")
         if path == "torch" or (len(case[0].shape) == 2 and case[2] is not None)]


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 2e-6), (torch.float64, 1e-13)])
@pytest.mark.parametrize("name,path", PATHS)
def test_fused_forward_equals_the_per_view_path(monkeypatch, name, dtype, tol, path):
    grid, orbit, coll, n_mu, batch, channels = CASES[name]
    x, mu = _inputs(grid, n_mu, batch, channels, dtype)
    new, ref = _pair(grid, orbit, coll, mu, compiled=path == "compiled")
    calls = []
    real = _compiled.depth_loop
    monkeypatch.setattr(_compiled, "depth_loop", lambda *a: calls.append(1) or real(*a))
    with torch.no_grad():
        y_new, y_ref = new.A(x), ref.A(x)
    assert y_new.shape == y_ref.shape == new.projection_shape(batch, channels)
    assert float((y_new - y_ref).norm() / y_ref.norm()) < tol
    # The path under test was the one taken (a fallback would make this test vacuous).
    blur = new._blur(x.device, dtype)
    assert blur is None or blur.is_three_tap
    assert bool(calls) == (path == "compiled")


def test_fused_forward_chunking_does_not_change_the_result():
    grid, orbit, coll, n_mu, batch, channels = CASES["3d-lehr-mu"]
    x, mu = _inputs(grid, n_mu, batch, channels, torch.float64)
    new, _ = _pair(grid, orbit, coll, mu)
    with torch.no_grad():
        whole = new.A(x)
        new.fused_chunk_mb, new.fused_columns = 1e-6, 1  # one view and one image per step
        pieces = new.A(x)
    assert torch.allclose(pieces, whole, rtol=1e-13, atol=0)


@pytest.mark.parametrize("name", ["2d-lehr-mu-per-sample", "2d-lehr-shared-mu-2ch"])
def test_compiled_forward_chunking_does_not_change_the_result(name):
    grid, orbit, coll, n_mu, batch, channels = CASES[name]
    x, mu = _inputs(grid, n_mu, batch, channels, torch.float64)
    new, _ = _pair(grid, orbit, coll, mu)
    with torch.no_grad():
        whole = new.A(x)
        new.fused_chunk_mb, new.compiled_columns = 1e-6, 1  # one base view and one image per step
        pieces = new.A(x)
    assert torch.allclose(pieces, whole, rtol=1e-13, atol=0)


@pytest.mark.parametrize("compiled", [True, False])
def test_fused_forward_on_a_subset_equals_those_views_of_the_full_set(compiled):
    grid, orbit, coll, n_mu, batch, channels = CASES["2d-noncircular-mu"]
    x, mu = _inputs(grid, n_mu, batch, channels, torch.float64)
    new, ref = _pair(grid, orbit, coll, mu, compiled)
    subset = [11, 2, 7]
    with torch.no_grad():
        full = new.A(x)
        sub = new.A(x, subset)
    assert torch.allclose(sub, full[:, :, subset], rtol=1e-13, atol=0)
    assert torch.allclose(sub, ref.A(x, subset), rtol=1e-12, atol=0)


@pytest.mark.parametrize("name,compiled", [("2d-lehr-mu-per-sample", True), ("2d-lehr-mu-per-sample", False),
                                           ("3d-noncircular-megp-shared-mu", False)])
def test_fused_forward_is_the_adjoint_of_the_back_projector(name, compiled):
    grid, orbit, coll, n_mu, batch, _ = CASES[name]
    _, mu = _inputs(grid, n_mu, batch, 1, torch.float64)
    new, _ = _pair(grid, orbit, coll, mu, compiled)
    with torch.no_grad():
        res = new.adjointness_test(batch=batch)
    assert res.relative_error < 1e-12


def test_autograd_path_and_cached_path_equal_the_fused_path():
    grid, orbit, coll, n_mu, batch, channels = CASES["2d-lehr-mu-per-sample"]
    x, mu = _inputs(grid, n_mu, batch, channels, torch.float64)
    new, _ = _pair(grid, orbit, coll, mu)
    cached = SpectProjector(grid, orbit, coll, mu, cache_attenuation=True)
    with torch.no_grad():
        fused = new.A(x)
        via_cache = cached.A(x)
    xg = x.clone().requires_grad_(True)
    via_grad = new.A(xg)
    via_grad.sum().backward()
    assert torch.allclose(via_cache, fused, rtol=1e-12, atol=0)
    assert torch.allclose(via_grad.detach(), fused, rtol=1e-12, atol=0)
    # d(Σ A x)/dx = Aᵀ 1, the sensitivity image.
    assert torch.allclose(xg.grad, new.sensitivity(batch, dtype=torch.float64).expand_as(xg), rtol=1e-10, atol=1e-12)


def test_wide_increments_fall_back_to_the_per_view_path():
    # 0.25 mm voxels 300 mm from a LEHR collimator: σ is tens of pixels and grows by more than half
    # a pixel² per plane, so the increments are discrete Gaussians the fused loop does not take.
    grid, orbit, coll = VoxelGrid((16, 16), 0.25), Orbit.circular(8, 300.0), LEHR
    x, mu = _inputs(grid, 1, 1, 1, torch.float64)
    new, ref = _pair(grid, orbit, coll, mu)
    blur = new._blur(x.device, torch.float64)
    assert not blur.is_three_tap
    with torch.no_grad():
        assert torch.allclose(new.A(x), ref.A(x), rtol=1e-13, atol=0)


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("orbit, products", [
    (Orbit.circular(24, 150.0), 6),  # 15° steps: four views per rotation
    (Orbit.circular(24, 150.0, 360.0, 45.0, "cw"), 6),
    (Orbit.circular(10, 150.0, 70.0), 10),  # 7° steps over 70°: no two views 90° apart
])
def test_views_a_quarter_turn_apart_share_one_rotation(monkeypatch, orbit, products, compiled):
    """``R_{θ+90°}`` is a permutation of ``R_θ`` on the centred square grid, so the fused path does
    one sparse product per set of views 90° apart, and still equals the per-view path."""
    grid = VoxelGrid((32, 32), 3.0)
    x, mu = _inputs(grid, 2, 2, 1, torch.float64)
    new, ref = _pair(grid, orbit, LEHR, mu, compiled)
    with torch.no_grad():
        y_ref = ref.A(x)
        calls = []
        if compiled:  # one compiled product rotates the activity and μ together
            real = _compiled.rotate
            monkeypatch.setattr(_compiled, "rotate", lambda *a: calls.append(1) or real(*a))
        else:
            real_mm = torch.sparse.mm
            monkeypatch.setattr(torch.sparse, "mm", lambda *a: calls.append(1) or real_mm(*a))
        y_new = new.A(x)
    assert len(calls) == (1 if compiled else 2) * products  # activity and μ
    assert float((y_new - y_ref).norm() / y_ref.norm()) < 1e-13
