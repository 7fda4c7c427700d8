"""Data consistency: the Poisson deviance of forward-projected images against measured counts.

References are computed independently with scipy (``xlogy``, ``poisson.logpmf``, ``poisson.pmf``);
the study check simulates a small NEMA IEC acquisition and invents a hot spot in the lung insert.
"""

import math

import numpy as np
import pytest
import torch
from scipy import special, stats

from spectdl.errors import InputError
from spectdl.geometry import Collimator, Orbit, VoxelGrid
from spectdl.metrics.consistency import DataConsistency, data_consistency, poisson_deviance
from spectdl.noise import poisson
from spectdl.phantoms import nema_iec
from spectdl.physics import SpectProjector
from spectdl.recon import osem

TOTAL_COUNTS = 1e6


def _random_pair(shape, seed):
    gen = torch.Generator().manual_seed(seed)
    # means spread from 0.05 to ~30 counts, most of them low, so that many bins draw y = 0
    mu = 0.05 + 30.0 * torch.rand(shape, generator=gen, dtype=torch.float64) ** 3
    y = torch.poisson(mu, generator=gen)
    return y, mu


def _scipy_terms(y: np.ndarray, mu: np.ndarray) -> np.ndarray:
    return 2.0 * (special.xlogy(y, y) - special.xlogy(y, mu) - (y - mu))


def _expected_deviance_per_bin(mu: np.ndarray) -> np.ndarray:
    """E[d(y, μ)] for y ~ Poisson(μ), summed exactly over the pmf (μ up to a few hundred)."""
    k = np.arange(0, int(mu.max() + 12 * math.sqrt(mu.max()) + 30))[:, None]
    m = mu[None, :]
    return (stats.poisson.pmf(k, m) * _scipy_terms(k, m)).sum(0)


def _expected_deviance_many(mu: np.ndarray) -> np.ndarray:
    """The same for many bins: exact on 3000 log-spaced means, interpolated (E[d] is smooth in log μ);
    0 where μ = 0 (such a bin always counts 0, which the model predicts exactly)."""
    out = np.zeros_like(mu, dtype=np.float64)
    pos = mu > 0
    nodes = np.geomspace(mu[pos].min(), mu[pos].max(), 3000)
    out[pos] = np.interp(np.log(mu[pos]), np.log(nodes), _expected_deviance_per_bin(nodes))
    return out


# ----------------------------------------------------------------------------- poisson_deviance
def test_poisson_deviance_matches_scipy_xlogy_and_logpmf():
    y, mu = _random_pair((3, 1, 7, 11, 5), seed=1)
    assert int((y == 0).sum()) > 100  # the y log y = 0 convention is exercised
    yn, mn = y.numpy(), mu.numpy()
    terms = _scipy_terms(yn, mn)
    ref_view = terms.sum(axis=(1, 3, 4))
    ref_sum = terms.reshape(3, -1).sum(1)
    # the same deviance as twice the log-likelihood ratio saturated / model
    ref_llr = 2.0 * (stats.poisson.logpmf(yn, yn) - stats.poisson.logpmf(yn, mn)).reshape(3, -1).sum(1)
    np.testing.assert_allclose(ref_sum, ref_llr, rtol=1e-10)

    np.testing.assert_allclose(poisson_deviance(y, mu, reduction="none").numpy(), ref_view, rtol=1e-10)
    np.testing.assert_allclose(poisson_deviance(y, mu, reduction="sum").numpy(), ref_llr, rtol=1e-10)
    per_count = poisson_deviance(y, mu)
    assert per_count.dtype == torch.float64 and per_count.shape == (3,)
    np.testing.assert_allclose(per_count.numpy(), ref_sum / yn.reshape(3, -1).sum(1), rtol=1e-10)
    # float32 inputs are promoted, not computed in single precision
    np.testing.assert_allclose(
        poisson_deviance(y.float(), mu.float(), reduction="sum").numpy(),
        _scipy_terms(y.float().double().numpy(), mu.float().double().numpy()).reshape(3, -1).sum(1),
        rtol=1e-10,
    )


def test_poisson_deviance_integer_counts_and_2d_projections():
    y, mu = _random_pair((2, 1, 9, 13), seed=2)
    ref = poisson_deviance(y, mu, reduction="none")
    assert ref.shape == (2, 9)
    torch.testing.assert_close(poisson_deviance(y.to(torch.int64), mu, reduction="none"), ref, rtol=0, atol=0)
    torch.testing.assert_close(poisson_deviance(y.to(torch.int32), mu, reduction="none"), ref, rtol=0, atol=0)


def test_poisson_deviance_zero_only_for_a_perfect_model():
    y, _ = _random_pair((2, 1, 6, 10, 4), seed=3)
    assert int((y == 0).sum()) > 0
    zero = torch.zeros(2, 6, dtype=torch.float64)
    assert torch.equal(poisson_deviance(y, y.clone(), reduction="none"), zero)
    # any change of the model in a view makes that view's deviance positive, and only that view's
    mu = y.clone()
    mu[0, 0, 2, 3, 1] += 0.5
    mu[1, 0, 4, 0, 0] = max(float(mu[1, 0, 4, 0, 0]) * 0.9, 0.3)
    dev = poisson_deviance(y, mu, reduction="none")
    assert dev[0, 2] > 0 and dev[1, 4] > 0
    assert int((dev > 0).sum()) == 2
    _, mu2 = _random_pair((2, 1, 6, 10, 4), seed=4)
    assert bool((poisson_deviance(y, mu2, reduction="none") > 0).all())


def test_poisson_deviance_eps_floor_only_inside_the_log():
    y = torch.tensor([[[[3.0, 0.0, 0.0, 2.0]]]])
    mu = torch.tensor([[[[0.0, 0.0, 1.5, 2.0]]]])
    eps = 1e-6
    got = float(poisson_deviance(y, mu, reduction="sum", eps=eps))
    # bin 0: y > 0 with ŷ = 0 → 2(3 log(3/eps) − 3); bin 1: 0; bin 2: 2ŷ; bin 3: 0
    expected = 2.0 * (3.0 * math.log(3.0 / eps) - 3.0) + 2.0 * 1.5
    assert got == pytest.approx(expected, rel=1e-12)
    assert math.isfinite(float(poisson_deviance(y, mu)))


def test_expected_deviance_per_bin_is_about_one_at_50_counts():
    """y ~ Poisson(μ): E[d] = 1 + 1/(6μ) + O(μ⁻²) (McCullagh & Nelder §2.3), ≈ 1.003 at μ = 50."""
    mu_value = 50.0
    shape = (4, 1, 50, 25, 20)  # 100 000 bins, 200 views of 500 bins
    mu = torch.full(shape, mu_value, dtype=torch.float64)
    y = torch.poisson(mu, generator=torch.Generator().manual_seed(5))
    n_bins = y.numel()
    per_bin = float(poisson_deviance(y, mu, reduction="sum").sum()) / n_bins
    exact = float(_expected_deviance_per_bin(np.array([mu_value]))[0])
    assert exact == pytest.approx(1 + 1 / (6 * mu_value), abs=2e-4)
    # standard error from the spread of the per-view means (each 500 nearly independent χ²₁ terms)
    view_means = poisson_deviance(y, mu, reduction="none").flatten() / (25 * 20)
    se = float(view_means.std()) / math.sqrt(view_means.numel())
    assert 0.003 < se < 0.006  # Var d ≈ 2 → se ≈ √(2/n) = 0.0045
    assert abs(per_bin - exact) < 4 * se
    assert per_bin == pytest.approx(1.0, abs=0.03)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(measured=-torch.ones(1, 1, 2, 3)), r"measured: has 6 negative value\(s\) \(min -1"),
        (dict(expected=torch.full((1, 1, 2, 3), float("nan"))), "expected: contains 6 NaN"),
        (dict(expected=torch.ones(1, 1, 2, 4)),
         r"expected: shape \(1, 1, 2, 4\) differs from measured shape \(1, 1, 2, 3\)"),
        (dict(expected=-torch.ones(1, 1, 2, 3)), "expected: has 6 negative"),
        (dict(measured=torch.ones(2, 3), expected=torch.ones(2, 3)), "at least 3 dimensions"),
        (dict(reduction="mean"), "reduction: expected one of"),
        (dict(eps=0.0), "eps: expected a finite value > 0"),
        (dict(measured=np.ones((1, 1, 2, 3))), "measured: expected a torch.Tensor"),
        (dict(measured=torch.zeros(1, 1, 2, 3)), r"batch item\(s\) \[0\] hold no counts"),
    ],
)
def test_poisson_deviance_rejects_bad_input(kwargs, match):
    args = dict(measured=torch.ones(1, 1, 2, 3), expected=torch.ones(1, 1, 2, 3))
    args.update(kwargs)
    measured, expected = args.pop("measured"), args.pop("expected")
    with pytest.raises(InputError, match=match):
        poisson_deviance(measured, expected, **args)


# ----------------------------------------------------------------------------- the NEMA IEC study
@pytest.fixture(scope="module")
def nema_study():
    """NEMA IEC (8:1 spheres) on 8 mm voxels, 30 LEHR views, 10⁶ counts, OSEM 4×5."""
    grid = VoxelGrid((40, 40, 24), 8.0)
    ph = nema_iec(grid, ratio=8.0, dtype=torch.float64)
    proj = SpectProjector(grid, Orbit.circular(30, 200.0), Collimator.preset("LEHR"), ph.mu_per_cm)
    ax = proj(ph.activity)
    ybar = ax * (TOTAL_COUNTS / ax.sum())
    y = poisson(ybar, torch.Generator().manual_seed(11))
    recon = osem(y, proj, n_iters=4, n_subsets=5)
    # Enhanced images are compared in normalised units: each divided by its own mean.
    recon = recon / recon.mean()
    truth = ph.activity / ph.activity.mean()

    # The invented lesion: a 40 mm sphere at 6× the reconstructed background, inside the lung
    # insert (no activity in the truth) and away from the plane of the real spheres.
    c = torch.tensor(grid.centres_mm(0), dtype=torch.float64)
    z = torch.tensor(grid.centres_mm(2), dtype=torch.float64)
    gx, gy, gz = torch.meshgrid(c, c, z, indexing="ij")
    ball = ((gx**2 + gy**2 + (gz + 40.0) ** 2) <= 20.0**2).to(torch.float64)
    background = recon[0, 0][ph.labels[0, 0] == ph.label_names["background"]].mean()
    fake = recon + 6.0 * background * ball
    return dict(grid=grid, ph=ph, proj=proj, ybar=ybar, y=y, recon=recon, truth=truth, fake=fake, ball=ball)


def test_fake_hot_spot_is_inconsistent_with_the_measured_projections(nema_study):
    s = nema_study
    ph, ball = s["ph"], s["ball"]
    # the invented sphere sits where the truth has no activity, inside the body (the lung insert)
    assert float((ph.activity[0, 0] * ball).sum()) == 0.0
    assert bool((ph.labels[0, 0][ball > 0] == ph.label_names["lung"]).all())
    assert int(ball.sum()) >= 40

    real = data_consistency(s["recon"], s["proj"], s["y"])
    fake = data_consistency(s["fake"], s["proj"], s["y"])
    assert isinstance(real, DataConsistency)
    n_bins = s["y"].numel()
    d_real, d_fake = float(real.deviance_per_count), float(fake.deviance_per_count)
    print(f"\ndeviance per count: OSEM {d_real:.5f}, OSEM + fake hot spot {d_fake:.5f} "
          f"(ratio {d_fake / d_real:.3f}; per bin {float(real.deviance) / n_bins:.3f} vs "
          f"{float(fake.deviance) / n_bins:.3f})")
    assert d_fake > 1.08 * d_real
    # many times the spread of D between noise realisations (√(2n), χ²-like): not a chance excess
    assert float(fake.deviance - real.deviance) > 5 * math.sqrt(2 * n_bins)
    # the fitted scale pays for the spot's extra counts by lowering the rest of the image, in every view
    assert float(fake.scale) < float(real.scale)
    assert bool((fake.per_view > real.per_view).all())


def test_noise_free_truth_sits_at_the_poisson_noise_floor(nema_study):
    s = nema_study
    y, ybar = s["y"], s["ybar"]
    res = data_consistency(s["truth"], s["proj"], y)
    n_bins = y.numel()
    floor = float(_expected_deviance_many(ybar.numpy().ravel()).sum())
    per_bin = float(res.deviance) / n_bins
    print(f"\ntruth: deviance per bin {per_bin:.4f}, expected E[D]/n {floor / n_bins:.4f}, "
          f"D/E[D] {float(res.deviance) / floor:.4f}, per count {float(res.deviance_per_count):.5f}")
    # E[D]/n is below 1 here only because of the nearly empty bins outside the body (E[d] → 0)
    assert 0.85 < floor / n_bins < 1.0
    assert float(res.deviance) / floor == pytest.approx(1.0, abs=4 * math.sqrt(2 * n_bins) / floor)
    # the fitted scale recovers the simulated count level: s·ΣA(truth) = Σy ≈ 10⁶
    np.testing.assert_allclose(float(res.counts), float(y.sum()))
    assert float((res.scale * s["proj"](s["truth"]).sum())) == pytest.approx(float(y.sum()), rel=1e-12)


def test_fitted_scale_is_invariant_and_maximum_likelihood(nema_study):
    s = nema_study
    proj, y, x = s["proj"], s["y"], s["fake"]
    base = data_consistency(x, proj, y)
    for c in (1e-3, 0.5, 37.0):
        other = data_consistency(c * x, proj, y)
        np.testing.assert_allclose(other.deviance_per_count.numpy(), base.deviance_per_count.numpy(),
                                   rtol=1e-12)
        np.testing.assert_allclose(other.per_view.numpy(), base.per_view.numpy(), rtol=1e-10)
        np.testing.assert_allclose(other.scale.numpy(), base.scale.numpy() / c, rtol=1e-12)
    # the fitted scale is the Poisson ML scale: any other scale fits worse
    s_ml = float(base.scale)
    fixed = data_consistency(x, proj, y, scale=s_ml)
    np.testing.assert_allclose(fixed.deviance.numpy(), base.deviance.numpy(), rtol=1e-12)
    for f in (0.98, 1.02):
        assert float(data_consistency(x, proj, y, scale=f * s_ml).deviance) > float(base.deviance)
    # total expected counts equal the measured counts: the count-weighted residuals cancel
    ycount = y.sum(dim=(1, 3, 4))
    assert abs(float((base.residual_per_view * ycount).sum())) < 1e-6 * float(y.sum())


def test_per_view_values_match_an_independent_computation(nema_study):
    s = nema_study
    proj, y, x = s["proj"], s["y"], s["recon"]
    res = data_consistency(x, proj, y)
    mu = (proj(x.double()) * res.scale.reshape(-1, 1, 1, 1, 1)).numpy()
    yn = y.numpy()
    terms = _scipy_terms(yn, mu)
    y_view = yn.sum(axis=(1, 3, 4))
    np.testing.assert_allclose(res.per_view.numpy(), terms.sum(axis=(1, 3, 4)) / y_view, rtol=1e-9)
    np.testing.assert_allclose(res.residual_per_view.numpy(), (y_view - mu.sum(axis=(1, 3, 4))) / y_view,
                               rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(res.deviance_per_count.numpy(), terms.sum() / yn.sum(), rtol=1e-9)
    assert res.per_view.shape == (1, 30) and res.residual_per_view.shape == (1, 30)
    # the total is the count-weighted mean of the views
    weighted = float((res.per_view.numpy() * y_view).sum() / y_view.sum())
    np.testing.assert_allclose(weighted, float(res.deviance_per_count), rtol=1e-12)


def test_batch_items_are_independent_and_integer_counts_accepted(nema_study):
    s = nema_study
    proj, y = s["proj"], s["y"]
    both = data_consistency(torch.cat([s["recon"], s["fake"]]), proj, torch.cat([y, y]).to(torch.int64))
    one = data_consistency(s["recon"], proj, y)
    two = data_consistency(s["fake"], proj, y)
    np.testing.assert_allclose(both.deviance_per_count.numpy(),
                               [float(one.deviance_per_count), float(two.deviance_per_count)], rtol=1e-12)
    np.testing.assert_allclose(both.scale.numpy(), [float(one.scale), float(two.scale)], rtol=1e-12)


def test_additive_scatter_enters_the_model_and_the_scale(nema_study):
    s = nema_study
    proj, ybar = s["proj"], s["ybar"]
    # a smooth scatter background of 20 % of the counts, measured together with the primaries
    scatter = torch.full_like(ybar, 0.2 * float(ybar.sum()) / ybar.numel())
    y = poisson(ybar + scatter, torch.Generator().manual_seed(12))
    res = data_consistency(s["truth"], proj, y, additive=scatter)
    ax = proj(s["truth"])
    s_expected = (float(y.sum()) - float(scatter.sum())) / float(ax.sum())
    assert float(res.scale) == pytest.approx(s_expected, rel=1e-12)
    mu = (s_expected * ax + scatter).numpy()
    ref = _scipy_terms(y.numpy(), mu).sum() / float(y.sum())
    assert float(res.deviance_per_count) == pytest.approx(ref, rel=1e-9)
    # ignoring the scatter the primaries-only model is visibly inconsistent
    assert float(data_consistency(s["truth"], proj, y).deviance_per_count) > 1.2 * ref


def test_2d_projector():
    grid = VoxelGrid((24, 24), 4.0)
    proj = SpectProjector(grid, Orbit.circular(12, 80.0), Collimator.preset("LEHR"))
    gen = torch.Generator().manual_seed(13)
    x = torch.rand((2, 1, 24, 24), generator=gen, dtype=torch.float64)
    ybar = proj(x) * 50.0
    y = poisson(ybar, gen)
    res = data_consistency(x, proj, y)
    assert res.per_view.shape == (2, 12) and res.deviance_per_count.shape == (2,)
    np.testing.assert_allclose(res.scale.numpy(), (y.sum(dim=(1, 2, 3)) / proj(x).sum(dim=(1, 2, 3))).numpy())
    ref = _scipy_terms(y.numpy(), (proj(x) * res.scale.reshape(2, 1, 1, 1)).numpy())
    np.testing.assert_allclose(res.deviance.numpy(), ref.reshape(2, -1).sum(1), rtol=1e-10)


def test_data_consistency_rejects_bad_input():
    grid = VoxelGrid((16, 16), 4.0)
    proj = SpectProjector(grid, Orbit.circular(6, 60.0))
    x = torch.ones(1, 1, 16, 16)
    y = torch.ones(1, 1, 6, 16)
    cases = [
        (dict(image=torch.ones(1, 1, 16, 15)),
         r"image: shape \(1, 1, 16, 15\) does not match the projector's grid; expected \[B, 1, 16, 16\]"),
        (dict(image=torch.ones(1, 2, 16, 16)), "image: shape"),
        (dict(image=torch.full((1, 1, 16, 16), float("nan"))), "image: contains 256 NaN"),
        (dict(image=-x), "image: has 256 negative value"),
        (dict(image=torch.zeros(1, 1, 16, 16)), "image: batch item"),
        (dict(measured=torch.ones(1, 1, 6, 15)),
         r"measured: shape \(1, 1, 6, 15\) does not match .* expected \[1, 1, 6, 16\]"),
        (dict(measured=torch.ones(2, 1, 6, 16)), "measured: shape"),
        (dict(measured=-y), "measured: has 96 negative"),
        (dict(measured=torch.zeros(1, 1, 6, 16)), "measured: batch item"),
        (dict(scale=0.0), "scale: expected finite values > 0"),
        (dict(scale=[1.0, 2.0]), "scale: found 2 values; expected 1 or 1"),
        (dict(additive=torch.ones(1, 1, 6, 3)), "additive: shape"),
        (dict(additive=-torch.ones(1, 1, 6, 16)), "additive: has 96 negative"),
        (dict(additive=torch.full((1, 1, 6, 16), 2.0)), r"Σ y − Σ additive <= 0"),
        (dict(projector="not a projector"), "projector: expected a SpectProjector"),
    ]
    for kwargs, match in cases:
        args = dict(image=x, projector=proj, measured=y)
        args.update(kwargs)
        with pytest.raises(InputError, match=match):
            data_consistency(args.pop("image"), args.pop("projector"), args.pop("measured"), **args)
