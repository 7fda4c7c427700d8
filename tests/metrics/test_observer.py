import math

import numpy as np
import pytest
import torch
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from spectdl.errors import InputError
from spectdl.metrics.observer import (
    CHO,
    CHOResult,
    cho_detectability,
    cho_train,
    dog_channels,
    extract_patches,
    laguerre_gauss_channels,
)
from spectdl.metrics.observer import _auc

SIZE = 31
SIGMA_SIGNAL = 2.0  # px, standard deviation of the Gaussian lesion
AMPLITUDE = 0.6
SIGMA_NOISE = 1.0
MATCHED_A = SIGMA_SIGNAL * math.sqrt(2 * math.pi)  # LG width whose u_0 is the lesion's shape


def _blob(size=SIZE, sigma=SIGMA_SIGNAL, amplitude=AMPLITUDE):
    c = np.arange(size) - (size - 1) / 2
    return amplitude * np.exp(-(c[:, None] ** 2 + c[None, :] ** 2) / (2 * sigma**2))


def _ske_data(n, seed, size=SIZE):
    """Signal-known-exactly task: blob + white N(0, σ²) noise vs noise alone."""
    rng = np.random.default_rng(seed)
    s = _blob(size)
    g1 = s + SIGMA_NOISE * rng.standard_normal((n, size, size))
    g0 = SIGMA_NOISE * rng.standard_normal((n, size, size))
    return s, g1, g0


def _channelized_d(u, s, sigma=SIGMA_NOISE):
    """Analytic CHO d′ in white noise: sqrt(Δvᵀ K⁻¹ Δv), Δv = U s, K = σ² U Uᵀ."""
    dv = u @ s.ravel()
    return math.sqrt(dv @ np.linalg.solve(sigma**2 * u @ u.T, dv))


@pytest.fixture(scope="module")
def ske():
    return _ske_data(2000, seed=7)


# --------------------------------------------------------------------------- channels

def test_lg_channels_orthonormal_on_large_grid_and_centred():
    u = laguerre_gauss_channels(128, n_channels=8, width_px=10.0)
    assert u.shape == (8, 128 * 128) and u.dtype == torch.float64
    gram = (u @ u.T).numpy()
    assert np.abs(gram - np.eye(8)).max() < 1e-3
    # odd grid: the centre pixel holds u_j(0) = sqrt(2)/a · L_j(0) = sqrt(2)/a
    u_odd = laguerre_gauss_channels(129, n_channels=3, width_px=10.0).reshape(3, 129, 129)
    assert u_odd[:, 64, 64].numpy() == pytest.approx([math.sqrt(2) / 10] * 3, rel=1e-12)
    # even grid: centred between pixels, so the channel is symmetric under flips
    u_even = laguerre_gauss_channels((20, 24), n_channels=3, width_px=5.0).reshape(3, 20, 24)
    assert torch.allclose(u_even, u_even.flip(1)) and torch.allclose(u_even, u_even.flip(2))


def test_lg_channel_values_match_closed_form():
    from scipy.special import eval_laguerre  # reference uses the textbook formula directly

    a, size = 7.5, 16
    u = laguerre_gauss_channels(size, n_channels=4, width_px=a).reshape(4, size, size).numpy()
    y, x = 3, 11
    r2 = (y - 7.5) ** 2 + (x - 7.5) ** 2
    ref = [math.sqrt(2) / a * math.exp(-math.pi * r2 / a**2) * eval_laguerre(j, 2 * math.pi * r2 / a**2)
           for j in range(4)]
    assert u[:, y, x] == pytest.approx(ref, rel=1e-12)


def test_dog_channels_have_the_published_frequency_profile():
    size = 128
    sigma0, alpha, q = 0.015, 2.0, 2.0
    u = dog_channels(size, n_channels=3, sigma0_px=sigma0, alpha=alpha, q=q).reshape(3, size, size).numpy()
    f = np.fft.fftfreq(size)
    rho = np.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
    for j in range(3):
        sj = sigma0 * alpha**j
        ref = np.exp(-0.5 * (rho / (q * sj)) ** 2) - np.exp(-0.5 * (rho / sj) ** 2)
        spectrum = np.abs(np.fft.fft2(u[j]))  # |DFT|: the centring only adds a phase
        assert np.abs(spectrum - ref).max() < 1e-3
        assert ref.max() > 0.2  # the comparison is not between two near-zero arrays


# --------------------------------------------------------------------------- known signal in white noise

def test_channelized_analytic_d_is_bounded_by_ideal_observer():
    s = _blob()
    ideal = np.linalg.norm(s) / SIGMA_NOISE  # prewhitening ideal observer, ||s|| / σ
    for a in (MATCHED_A, 1.3 * MATCHED_A):
        u = laguerre_gauss_channels(SIZE, n_channels=5, width_px=a).numpy()
        d_ch = _channelized_d(u, s)
        assert d_ch <= ideal * (1 + 1e-12)
        assert d_ch == pytest.approx(ideal, rel=0.01)
    # one channel twice too wide: the d′ ratio is the 2-D Gaussian overlap 2σσ'/(σ²+σ'²) = 0.8
    u1 = laguerre_gauss_channels(SIZE, n_channels=1, width_px=2 * MATCHED_A).numpy()
    assert _channelized_d(u1, s) / ideal == pytest.approx(0.8, rel=1e-3)


def test_cho_estimate_matches_analytic_channelized_d(ske):
    s, g1, g0 = ske
    u = laguerre_gauss_channels(SIZE, n_channels=5, width_px=1.3 * MATCHED_A)
    analytic = _channelized_d(u.numpy(), s)  # ≈ 2.127
    res = cho_detectability(torch.from_numpy(g1), torch.from_numpy(g0), channels=u, seed=0, n_bootstrap=300)
    assert isinstance(res, CHOResult)
    assert (res.n_present, res.n_absent, res.n_test_present, res.n_test_absent) == (2000, 2000, 1000, 1000)
    assert res.channels == "custom" and res.n_channels == 5 and res.train_fraction == 0.5
    # a Monte Carlo of this estimator (30 data sets) gave mean 2.125, sd 0.049 (2.3 %):
    # 7 % is about 3 sd
    assert res.d_prime == pytest.approx(analytic, rel=0.07)
    # Gaussian test statistics: AUC = Φ(d′/√2)
    assert res.auc == pytest.approx(norm.cdf(analytic / math.sqrt(2)), abs=0.02)
    assert res.auc == pytest.approx(norm.cdf(res.d_prime / math.sqrt(2)), abs=0.01)
    assert res.d_prime_ci[0] < analytic < res.d_prime_ci[1]
    # the default LG and sparse-DoG sets also nearly reach it on this task
    for name in ("lg", "dog"):
        r = cho_detectability(g1, g0, channels=name, seed=0, n_bootstrap=0)
        assert r.channels == name
        assert r.d_prime == pytest.approx(analytic, rel=0.1)


def test_resubstitution_equals_hotelling_formula_and_sklearn_auc(ske):
    s, g1, g0 = ske
    g1, g0 = g1[:400], g0[:400]
    u = laguerre_gauss_channels(SIZE, n_channels=4, width_px=MATCHED_A).numpy()
    res = cho_detectability(g1, g0, channels=u, train_fraction=None, n_bootstrap=0)
    # independent reference: numpy covariances and solve
    v1 = g1.reshape(400, -1) @ u.T
    v0 = g0.reshape(400, -1) @ u.T
    dv = v1.mean(0) - v0.mean(0)
    S = (np.cov(v1, rowvar=False) + np.cov(v0, rowvar=False)) / 2
    w = np.linalg.solve(S, dv)
    assert res.d_prime == pytest.approx(math.sqrt(dv @ w), rel=1e-9)
    t = np.concatenate([v1 @ w, v0 @ w])
    labels = np.r_[np.ones(400), np.zeros(400)]
    assert res.auc == pytest.approx(roc_auc_score(labels, t), abs=1e-12)
    assert math.isnan(res.auc_ci[0]) and math.isnan(res.d_prime_ci[1])
    # the CHO class gives the same template and statistics
    cho = cho_train(g1, g0, u)
    assert cho.template.numpy() == pytest.approx(w, rel=1e-8)
    assert cho.d_prime_train == pytest.approx(math.sqrt(dv @ w), rel=1e-9)
    assert cho.score(torch.from_numpy(g1)).numpy() == pytest.approx(v1 @ w, rel=1e-8)
    assert cho.score(g0[:1]).numpy() == pytest.approx(v0[:1] @ w, rel=1e-8)  # one patch is fine


def test_mann_whitney_auc_with_ties_matches_sklearn():
    rng = np.random.default_rng(3)
    t1 = rng.integers(0, 5, 37).astype(float)
    t0 = rng.integers(0, 4, 23).astype(float)
    ref = roc_auc_score(np.r_[np.ones(37), np.zeros(23)], np.r_[t1, t0])
    assert float(_auc(t1, t0)) == pytest.approx(ref, abs=1e-12)


def test_duplicated_channels_are_handled_by_the_pseudo_inverse(ske):
    _, g1, g0 = ske
    g1, g0 = g1[:300], g0[:300]
    u = laguerre_gauss_channels(SIZE, n_channels=3, width_px=MATCHED_A)
    ref = cho_detectability(g1, g0, channels=u, train_fraction=None, n_bootstrap=0)
    dup = cho_detectability(g1, g0, channels=torch.cat([u, 2 * u[:1]]), train_fraction=None, n_bootstrap=0)
    assert math.isfinite(dup.d_prime)
    assert dup.d_prime == pytest.approx(ref.d_prime, rel=1e-8)
    assert dup.auc == pytest.approx(ref.auc, abs=1e-12)


def test_internal_noise_lowers_d_by_the_expected_factor(ske):
    s, g1, g0 = ske
    # one channel: d′(κ) = Δv / sqrt(S (1 + κ)) = d′(0) / sqrt(1 + κ)
    u = laguerre_gauss_channels(SIZE, n_channels=1, width_px=MATCHED_A)
    d0 = cho_detectability(g1, g0, channels=u, seed=1, n_bootstrap=0).d_prime
    d1 = cho_detectability(g1, g0, channels=u, seed=1, n_bootstrap=0, internal_noise=1.0).d_prime
    assert d1 / d0 == pytest.approx(1 / math.sqrt(2), rel=0.06)
    cho = cho_train(g1, g0, u, internal_noise=1.0)
    with pytest.raises(InputError, match="rng"):
        cho.score(g1)
    t = cho.score(g1, rng=np.random.default_rng(0))
    assert t.shape == (2000,)


# --------------------------------------------------------------------------- null task, seeds, bootstrap

def test_signal_absent_in_both_classes_gives_chance():
    rng = np.random.default_rng(11)
    a = rng.standard_normal((500, SIZE, SIZE))
    b = rng.standard_normal((500, SIZE, SIZE))
    res = cho_detectability(a, b, channels="lg", seed=2, n_bootstrap=500)
    # test sets of 250 per class: sd(d′) ≈ sqrt(2/250) ≈ 0.09
    assert abs(res.d_prime) < 0.3
    assert res.auc == pytest.approx(0.5, abs=0.08)
    assert res.auc_ci[0] < 0.5 < res.auc_ci[1]
    assert res.d_prime_ci[0] < 0.0 < res.d_prime_ci[1]


def test_seed_determinism_and_bootstrap_intervals(ske):
    _, g1, g0 = ske
    u = laguerre_gauss_channels(SIZE, n_channels=5, width_px=MATCHED_A)
    small = dict(channels=u, n_bootstrap=400)
    r1 = cho_detectability(g1[:200], g0[:200], seed=5, **small)
    r2 = cho_detectability(torch.from_numpy(g1[:200]), torch.from_numpy(g0[:200]), seed=5, **small)
    assert r1 == r2
    r3 = cho_detectability(g1[:200], g0[:200], seed=6, **small)
    assert r3.d_prime != r1.d_prime and r3.auc_ci != r1.auc_ci
    for r in (r1, r3):
        assert r.d_prime_ci[0] < r.d_prime < r.d_prime_ci[1]
        assert r.auc_ci[0] < r.auc < r.auc_ci[1]
    big = cho_detectability(g1, g0, seed=5, **small)
    assert big.d_prime_ci[0] < big.d_prime < big.d_prime_ci[1]
    # 10× the cases: the intervals shrink by about sqrt(10) ≈ 3.2
    width = lambda ci: ci[1] - ci[0]  # noqa: E731
    assert width(big.d_prime_ci) < 0.5 * width(r1.d_prime_ci)
    assert width(big.auc_ci) < 0.5 * width(r1.auc_ci)
    # a higher confidence level widens the interval
    r99 = cho_detectability(g1[:200], g0[:200], seed=5, confidence_level=0.99, **small)
    assert width(r99.d_prime_ci) > width(r1.d_prime_ci)


def test_bootstrap_interval_widths_match_the_sampling_spread(ske):
    s, g1, g0 = ske
    u = laguerre_gauss_channels(SIZE, n_channels=5, width_px=1.3 * MATCHED_A)
    z = norm.ppf(0.975)
    # resubstitution: the large-sample sd of d′ with a fixed template is
    # sqrt(1/n₁ + 1/n₀ + d′²/(2(n₁ + n₀))) ≈ 0.036 for 2000 + 2000 cases at d′ ≈ 2.1
    res = cho_detectability(g1, g0, channels=u, seed=0, n_bootstrap=300, train_fraction=None)
    assert res.d_prime_ci[0] < res.d_prime < res.d_prime_ci[1]
    assert res.auc_ci[0] < res.auc < res.auc_ci[1]
    sd = math.sqrt(2 / 2000 + res.d_prime**2 / (2 * 4000))
    assert (res.d_prime_ci[1] - res.d_prime_ci[0]) / (2 * z * sd) == pytest.approx(1.0, abs=0.3)
    # hold-out: a Monte Carlo over 30 data sets gave sd(d′) = 0.049 (training adds to the spread)
    hold = cho_detectability(g1, g0, channels=u, seed=0, n_bootstrap=300)
    assert (hold.d_prime_ci[1] - hold.d_prime_ci[0]) / (2 * z * 0.049) == pytest.approx(1.0, abs=0.35)


def test_hold_out_removes_the_resubstitution_bias():
    # 60 random channels, 300 noise-only patches per class: scoring the training patches finds
    # spurious separation (d′² ≈ C (1/n₁ + 1/n₀) ≈ 0.4), held-out patches do not
    rng = np.random.default_rng(4)
    a = rng.standard_normal((300, 9, 9))
    b = rng.standard_normal((300, 9, 9))
    u = rng.standard_normal((60, 81))
    resub = cho_detectability(a, b, channels=u, train_fraction=None, n_bootstrap=0)
    hold = cho_detectability(a, b, channels=u, seed=0, n_bootstrap=0)
    assert resub.d_prime > 0.5
    assert abs(hold.d_prime) < 0.4  # sd ≈ 0.12 with 150 test patches per class


def test_bootstrap_does_not_touch_global_rng(ske):
    _, g1, g0 = ske
    np.random.seed(123)
    torch.manual_seed(123)
    before = (np.random.random(), torch.rand(1).item())
    np.random.seed(123)
    torch.manual_seed(123)
    cho_detectability(g1[:100], g0[:100], channels="dog", seed=0, n_bootstrap=50)
    after = (np.random.random(), torch.rand(1).item())
    assert before == after


# --------------------------------------------------------------------------- patches

def test_extract_patches_2d_and_3d():
    img = torch.arange(20 * 30, dtype=torch.float32).reshape(20, 30)
    p = extract_patches(img, [(10, 12), (2, 2)], 5)
    assert p.shape == (2, 5, 5) and p.dtype == torch.float32
    assert torch.equal(p[0], img[8:13, 10:15]) and p[0, 2, 2] == img[10, 12]
    assert torch.equal(p[1], img[0:5, 0:5])
    p[0, 0, 0] = -1  # a copy, not a view
    assert img[8, 10] != -1
    vol = torch.randn(16, 18, 7, dtype=torch.float64)
    q = extract_patches(vol, np.array([[8, 9, 3]]), 6)
    assert q.shape == (1, 6, 6) and torch.equal(q[0], vol[5:11, 6:12, 3])
    # an even size puts the centre voxel at index size // 2
    assert q[0, 3, 3] == vol[8, 9, 3]


def test_extract_patches_bad_input():
    img = torch.zeros(20, 30)
    with pytest.raises(InputError, match=r"centres_px\[1\].*axis 1.*0\.\.29"):
        extract_patches(img, [(10, 12), (10, 28)], 5)
    with pytest.raises(InputError, match=r"axis 0"):
        extract_patches(img, [(1, 12)], 5)
    with pytest.raises(InputError, match=r"slice z=7"):
        extract_patches(torch.zeros(16, 16, 7), [(8, 8, 7)], 5)
    with pytest.raises(InputError, match=r"centres_px: shape \(1, 3\); expected \[N, 2\]"):
        extract_patches(img, [(1, 2, 3)], 5)
    with pytest.raises(InputError, match="integer"):
        extract_patches(img, [(10.5, 12.0)], 5)
    with pytest.raises(InputError, match=r"image: shape \(20,\)"):
        extract_patches(torch.zeros(20), [(1, 2)], 5)


# --------------------------------------------------------------------------- bad input

def test_bad_inputs_raise_input_error():
    rng = np.random.default_rng(0)
    good = rng.standard_normal((10, 9, 9))
    cases = [
        (dict(signal_present=good[0]),
         r"signal_present: expected patches \[N, H, W\] \(3 dims\), found shape \(9, 9\)"),
        (dict(signal_absent=good[:1]), r"signal_absent: expected at least 2 patches, found 1"),
        (dict(signal_absent=rng.standard_normal((10, 9, 8))),
         r"signal_absent: patch size \(9, 8\); expected the size of signal_present, \(9, 9\)"),
        (dict(signal_present=np.where(good == good[0, 0, 0], np.nan, good)), r"signal_present: .*1 NaN"),
        (dict(channels="gabor"), r"channels: expected 'lg', 'dog' or a tensor.*'gabor'"),
        (dict(channels=torch.zeros(3, 80)), r"channels: shape \(3, 80\); expected \[C, 81\]"),
        (dict(channels=torch.zeros(3, 8, 9)), r"channels: shape \(3, 8, 9\); expected \[C, 9, 9\]"),
        (dict(train_fraction=1.0), r"train_fraction: expected a number in \(0, 1\) or None, found 1.0"),
        (dict(train_fraction=0.1), r"signal_present: 10 patches .* 1 training and 9 test"),
        (dict(confidence_level=95), r"confidence_level: expected a number in \(0, 1\), found 95"),
        (dict(n_bootstrap=-1), r"n_bootstrap: expected an int >= 0, found -1"),
        (dict(internal_noise=-0.1), r"internal_noise: expected a finite number >= 0"),
        (dict(seed=1.5), r"seed: expected an int or None"),
    ]
    for override, pattern in cases:
        kwargs = dict(signal_present=good, signal_absent=good + 1, channels="lg", n_bootstrap=0)
        kwargs.update(override)
        sp, sa = kwargs.pop("signal_present"), kwargs.pop("signal_absent")
        with pytest.raises(InputError, match=pattern):
            cho_detectability(sp, sa, **kwargs)
    with pytest.raises(InputError, match="width_px"):
        laguerre_gauss_channels(9, width_px=0)
    with pytest.raises(InputError, match="n_channels"):
        dog_channels(9, n_channels=0)
    with pytest.raises(InputError, match="q: expected Q != 1"):
        dog_channels(9, q=1.0)
    with pytest.raises(InputError, match="size"):
        laguerre_gauss_channels((9, 9, 9))
    with pytest.raises(InputError, match="not fitted"):
        CHO(laguerre_gauss_channels(9)).score(good)
    with pytest.raises(InputError, match=r"patches: patch size \(8, 8\); expected \(9, 9\)"):
        cho_train(good, good + 1, laguerre_gauss_channels(9)).score(good[:, :8, :8])
