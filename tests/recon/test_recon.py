import math

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch

from spectdl.errors import InputError
from spectdl.geometry import Collimator, Orbit, VoxelGrid
from spectdl.physics import SpectProjector
from spectdl.recon import butterworth_filter, fbp, gaussian_filter, mlem, osem, poisson_nll, subsets

F64 = torch.float64


def _phantom2d(n=64):
    t = torch.arange(n, dtype=F64) - (n - 1) / 2
    xx, yy = torch.meshgrid(t, t, indexing="ij")
    k = n / 64
    body = ((xx / (24 * k)) ** 2 + (yy / (20 * k)) ** 2 <= 1).to(F64)
    hot = ((xx - 10 * k) ** 2 + (yy + 6 * k) ** 2 <= (4 * k) ** 2).to(F64)
    return (body + 3 * hot)[None, None], body[None, None]


def test_subsets_are_interleaved_and_cover_all_views():
    parts = subsets(12, 4)
    assert parts[0] == [0, 4, 8] and parts[3] == [3, 7, 11]
    assert sorted(sum(parts, [])) == list(range(12))
    with pytest.raises(InputError, match="n_subsets"):
        subsets(12, 13)


def test_mlem_decreases_the_poisson_nll_every_iteration():
    x, body = _phantom2d()
    grid = VoxelGrid((64, 64), 4.0)
    P = SpectProjector(grid, Orbit.circular(32, 150.0), Collimator.preset("LEHR"), 0.15 * body)
    y = P(x)
    nll = []
    mlem(y, P, 12, callback=lambda it, xi: nll.append(float(poisson_nll(y, P(xi))[0])))
    assert len(nll) == 12
    assert all(b < a for a, b in zip(nll, nll[1:]))
    # The first iterate from a flat start is far from the truth; the likelihood must keep improving.
    assert nll[-1] < nll[0] - 1.0


def test_osem_output_is_non_negative_and_uses_the_additive_term():
    x, body = _phantom2d(32)
    grid = VoxelGrid((32, 32), 4.0)
    P = SpectProjector(grid, Orbit.circular(16, 120.0))
    y = P(x) + 2.0
    with_scatter = osem(y, P, 5, 4, additive=torch.full_like(y, 2.0))
    without = osem(y, P, 5, 4)
    assert float(with_scatter.min()) >= 0
    # Modelling the known scatter removes it: the sum matches the phantom's, not phantom + scatter.
    assert float(with_scatter.sum()) == pytest.approx(float(x.sum()), rel=0.03)
    # Unmodelled, the 2 × 32 extra counts per view (+15 % of the 416 true ones) end up in the image.
    assert float(without.sum()) == pytest.approx(float(x.sum()) + 64.0, rel=0.03)


def test_fbp_and_mlem_agree_with_the_phantom_in_the_centre():
    n = 64
    x, body = _phantom2d(n)
    grid = VoxelGrid((n, n), 4.0)
    P = SpectProjector(grid, Orbit.circular(90, 150.0))
    y = P(x)
    centre = (slice(None), slice(None), slice(26, 38), slice(30, 34))  # inside the body, off the hot spot
    truth = float(x[centre].mean())
    assert truth == 1.0
    rec_fbp = fbp(y, P)
    rec_mlem = mlem(y, P, 60)
    assert float(rec_fbp[centre].mean()) == pytest.approx(truth, rel=0.03)
    assert float(rec_mlem[centre].mean()) == pytest.approx(truth, rel=0.03)
    # The hot spot is recovered by both (contrast 4:1 in the phantom).
    hot = (slice(None), slice(None), slice(41, 44), slice(24, 28))
    assert float(rec_fbp[hot].mean()) > 3.0 and float(rec_mlem[hot].mean()) > 3.0


def test_fbp_on_a_180_degree_arc_and_windows():
    n = 48
    x, _ = _phantom2d(n)
    grid = VoxelGrid((n, n), 4.0)
    P = SpectProjector(grid, Orbit.circular(60, 150.0, arc_deg=180.0))
    rec = fbp(P(x), P, window="hann", cutoff=0.8)
    assert float(rec[0, 0, 20:28, 22:26].mean()) == pytest.approx(1.0, rel=0.05)
    with pytest.raises(InputError, match="window"):
        fbp(P(x), P, window="parzen-ish")


def test_gaussian_filter_matches_scipy():
    z = torch.rand(1, 1, 20, 22, 24, dtype=F64, generator=torch.Generator().manual_seed(0))
    sizes = (2.0, 2.0, 3.0)
    out = gaussian_filter(z, 7.0, sizes)
    sigma = [7.0 / (2 * math.sqrt(2 * math.log(2))) / s for s in sizes]
    ref = ndi.gaussian_filter(z[0, 0].numpy(), sigma, mode="constant", truncate=4.0)
    np.testing.assert_allclose(out[0, 0].numpy(), ref, rtol=1e-10, atol=1e-12)
    z2 = z[..., 0]
    ref2 = ndi.gaussian_filter(z2[0, 0].numpy(), [s for s in sigma[:2]], mode="constant", truncate=4.0)
    np.testing.assert_allclose(gaussian_filter(z2, 7.0, sizes[:2])[0, 0].numpy(), ref2, rtol=1e-10, atol=1e-12)


def test_butterworth_response_and_total():
    n = 64
    # A cosine at a known frequency is scaled by exactly H(f) = 1/sqrt(1 + (f/fc)^(2n)).
    f_cyc = 8 / n  # cycles per voxel
    t = torch.arange(n, dtype=F64)
    wave = torch.cos(2 * math.pi * f_cyc * t)[None, None, :, None].expand(1, 1, n, n)
    padded = torch.zeros(1, 1, 3 * n, 3 * n, dtype=F64)
    padded[..., n : 2 * n, n : 2 * n] = wave
    cutoff, order = 0.5, 4
    out = butterworth_filter(padded, cutoff, order)
    h = 1 / math.sqrt(1 + (f_cyc / (0.5 * cutoff)) ** (2 * order))
    centre = out[0, 0, n + 24 : 2 * n - 24, n + 24 : 2 * n - 24]
    ratio = float((centre * wave[0, 0, 24:-24, 24:-24]).sum() / (wave[0, 0, 24:-24, 24:-24] ** 2).sum())
    assert ratio == pytest.approx(h, rel=0.02)
    blob = torch.zeros(1, 1, 32, 32, 32, dtype=F64)
    blob[..., 12:20, 12:20, 12:20] = 1.0
    # H(0) = 1: the total is kept up to the ringing tails cropped at the image edge.
    assert float(butterworth_filter(blob, 0.4, 5).sum()) == pytest.approx(512.0, rel=1e-3)
    with pytest.raises(InputError, match="cutoff"):
        butterworth_filter(blob, 0.0)
    with pytest.raises(InputError, match="x: shape"):
        butterworth_filter(blob[0, 0, 0, 0], 0.5)


def test_osem_bad_input():
    grid = VoxelGrid((16, 16), 4.0)
    P = SpectProjector(grid, Orbit.circular(8, 100.0))
    y = torch.ones(1, 1, 8, 16)
    with pytest.raises(InputError, match="y: shape"):
        osem(torch.ones(1, 1, 7, 16), P, 1, 1)
    with pytest.raises(InputError, match="y: measured counts"):
        osem(-y, P, 1, 1)
    with pytest.raises(InputError, match="additive"):
        osem(y, P, 1, 1, additive=torch.ones(1, 1, 8, 15))
    with pytest.raises(InputError, match="n_iters"):
        osem(y, P, 0, 1)


def test_osem_on_nema_recovers_background_and_ranks_sphere_contrast():
    from spectdl.phantoms import nema_iec

    grid = VoxelGrid((64, 64, 40), 5.0)
    ph = nema_iec(grid, ratio=4.0)
    coll = Collimator.preset("LEHR")
    P = SpectProjector(grid, Orbit.circular(60, 250.0), coll, ph.mu_per_cm)
    y = P(ph.activity)
    rec = osem(y, P, 8, 6)
    # Background: labelled background, away from the spheres' plane and the body edge.
    lab = ph.labels[0, 0]
    inner = torch.nn.functional.max_pool3d((lab != 1).float()[None, None], 7, 1, 3)[0, 0] == 0
    bg = inner.clone()
    z_sph = int(round(float(ph.info["sphere_centres_mm"][0, 0, 2]) / 5.0 + (40 - 1) / 2))
    bg[..., z_sph - 4 : z_sph + 5] = False
    assert int(bg.sum()) > 500
    assert float(rec[0, 0][bg].mean()) == pytest.approx(1.0, rel=0.05)
    # Mean contrast in each sphere grows with its size (partial volume), 10 mm → 37 mm.
    means = [float(rec[0, 0][lab == 3 + k].mean()) for k in range(6) if bool((lab == 3 + k).any())]
    assert len(means) >= 5
    assert all(b > a for a, b in zip(means, means[1:]))
    assert means[-1] > 2.5  # the 37 mm sphere recovers most of its 4:1 contrast


# ---------------------------------------------------------------- dtypes and argument types
def _counts_problem():
    grid = VoxelGrid((24, 24), 4.0)
    P = SpectProjector(grid, Orbit.circular(12, 120.0), Collimator.preset("LEHR"))
    gen = torch.Generator().manual_seed(3)
    x_true = torch.zeros((1, 1, 24, 24))
    x_true[..., 6:18, 8:16] = 20.0
    y = torch.poisson(P.A(x_true), generator=gen).to(torch.int64)
    return P, y


def test_integer_poisson_counts_reconstruct_like_their_float32_version():
    P, y = _counts_problem()
    assert y.dtype == torch.int64 and int(y.sum()) > 1000
    x_int = osem(y, P, 3, 4)
    x_float = osem(y.float(), P, 3, 4)
    assert x_int.dtype == torch.float32
    torch.testing.assert_close(x_int, x_float, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(mlem(y.to(torch.int32), P, 2), mlem(y.float(), P, 2), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.bool, torch.complex64])
def test_osem_rejects_unsupported_dtypes(dtype):
    P, y = _counts_problem()
    with pytest.raises(InputError, match=rf"y: dtype {dtype}.*float32 or float64"):
        osem(y.to(dtype), P, 1, 2)


def test_osem_rejects_an_empty_batch():
    P, _ = _counts_problem()
    with pytest.raises(InputError, match="y: shape .* empty batch"):
        osem(torch.zeros(P.projection_shape(0, 1)), P, 1, 1)


@pytest.mark.parametrize("kwargs, name", [
    (dict(n_iters=2.7, n_subsets=2), "n_iters"),
    (dict(n_iters=2.0, n_subsets=2), "n_iters"),
    (dict(n_iters=2, n_subsets=1.5), "n_subsets"),
    (dict(n_iters=True, n_subsets=2), "n_iters"),
])
def test_osem_rejects_non_integer_counts_of_iterations_and_subsets(kwargs, name):
    P, y = _counts_problem()
    with pytest.raises(InputError, match=rf"{name}: expected an integer"):
        osem(y, P, **kwargs)


def test_subsets_rejects_a_fractional_number():
    with pytest.raises(InputError, match="n_subsets: expected an integer, found 1.5"):
        subsets(8, 1.5)


def test_fbp_chang_correction_restores_a_uniform_attenuating_disc():
    # A uniform water disc (radius 80 mm, μ = 0.15 /cm) seen without blur: without correction the
    # centre reads about exp(−μR) = 0.30 of the truth; Chang's first-order factor is exact at the
    # centre of a uniform disc and within a few per cent across its inner half (Chang 1978).
    g = VoxelGrid((96, 96), 2.0)
    xs = (torch.arange(96, dtype=torch.float64) - 47.5) * 2.0
    r = torch.sqrt(xs[:, None] ** 2 + xs[None, :] ** 2)
    disc = (r < 80.0).to(torch.float32)[None, None]
    P = SpectProjector(g, Orbit.circular(120, 200.0), mu_map=0.15 * disc)
    y = P(disc)
    plain = fbp(y, P, window="hann", cutoff=1.0)
    corrected = fbp(y, P, window="hann", cutoff=1.0, attenuation_correction=True)
    centre = (r < 10.0)[None, None]
    inner = (r < 40.0)[None, None]
    assert float(plain[centre].mean()) == pytest.approx(math.exp(-0.15 * 8.0), rel=0.25)
    assert float(corrected[centre].mean()) == pytest.approx(1.0, abs=0.06)
    assert float((corrected[inner] - 1.0).abs().mean()) < 0.08
    with pytest.raises(InputError, match="no μ map"):
        fbp(y, SpectProjector(g, Orbit.circular(120, 200.0)), attenuation_correction=True)


def test_osem_iterates_oracle_and_kept_iterations_match_separate_runs():
    from spectdl.recon import osem_iterates

    x, _ = _phantom2d(48)
    x = x.float()
    P = SpectProjector(VoxelGrid((48, 48), 4.0), Orbit.circular(24, 150.0))
    truth = torch.cat([x, 0.5 * x])
    y = torch.cat([P(x), P(x)]) * 50.0
    gen = torch.Generator().manual_seed(3)
    y = torch.poisson(y, generator=gen)
    scale = torch.tensor([50.0, 100.0])
    res = osem_iterates(y, P, 6, 4, truth, scale=scale, keep=(2, 5))
    # The independent reference: OSEM run separately to every iteration count.
    runs = [osem(y, P, k, 4) / scale.reshape(2, 1, 1, 1).float() for k in range(1, 7)]
    ref_mse = torch.stack([((r.double() - truth.double()) ** 2).flatten(1).mean(1) for r in runs], 1)
    torch.testing.assert_close(res.mse, ref_mse, rtol=1e-5, atol=1e-9)
    assert res.best_iteration.tolist() == (ref_mse.argmin(1) + 1).tolist()
    for b in range(2):
        torch.testing.assert_close(res.best[b], runs[int(res.best_iteration[b]) - 1][b], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(res.kept[5], runs[4], rtol=1e-5, atol=1e-6)
    with pytest.raises(InputError, match="keep"):
        osem_iterates(y, P, 3, 4, truth, keep=(4,))
    with pytest.raises(InputError, match="truth"):
        osem_iterates(y, P, 3, 4, truth[:1])
