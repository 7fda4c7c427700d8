import numpy as np
import pytest
import torch
from scipy import linalg

from spectdl.errors import InputError
from spectdl.metrics import FID
from spectdl.metrics.functional import feature_statistics, fid, fid_from_features, frechet_distance


def _spd(d, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((d, d))
    return a @ a.T + 0.1 * np.eye(d)


def _scipy_fd(mu1, s1, mu2, s2):
    covmean = linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def test_frechet_distance_matches_scipy_sqrtm():
    rng = np.random.default_rng(0)
    for d, seed in ((3, 1), (8, 2), (20, 3)):
        mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
        s1, s2 = _spd(d, seed), _spd(d, seed + 10)
        t = torch.tensor
        got = float(frechet_distance(t(mu1), t(s1), t(mu2), t(s2)))
        assert got == pytest.approx(_scipy_fd(mu1, s1, mu2, s2), rel=1e-9)
    # one-dimensional closed form: (m1 - m2)^2 + (sd1 - sd2)^2
    t = torch.tensor
    val = frechet_distance(t([1.0]), t([[4.0]]), t([3.0]), t([[9.0]]))
    assert float(val) == pytest.approx(4.0 + 1.0)


def test_fid_of_a_set_with_itself_is_zero():
    feats = torch.randn(50, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert float(fid_from_features(feats, feats)) == pytest.approx(0.0, abs=1e-9)


def test_feature_statistics_path_on_sampled_gaussians():
    rng = np.random.default_rng(4)
    d = 4
    mu1, mu2 = np.zeros(d), np.array([1.0, -0.5, 0.0, 2.0])
    s1, s2 = _spd(d, 5), _spd(d, 6)
    f1 = rng.multivariate_normal(mu1, s1, size=20000)
    f2 = rng.multivariate_normal(mu2, s2, size=20000)
    got = float(fid_from_features(torch.tensor(f1), torch.tensor(f2)))
    # exactly the sample statistics (numpy.cov, N - 1) through scipy's sqrtm ...
    exact = _scipy_fd(f1.mean(0), np.cov(f1, rowvar=False), f2.mean(0), np.cov(f2, rowvar=False))
    assert got == pytest.approx(exact, rel=1e-9)
    # ... and close to the population value of the two Gaussians
    assert got == pytest.approx(_scipy_fd(mu1, s1, mu2, s2), rel=0.05)
    mu, sigma = feature_statistics(torch.tensor(f1))
    np.testing.assert_allclose(sigma.numpy(), np.cov(f1, rowvar=False), rtol=1e-10)
    np.testing.assert_allclose(mu.numpy(), f1.mean(0), rtol=1e-10)


def test_fid_class_sums_statistics_across_batches():
    g = torch.Generator().manual_seed(1)
    real = torch.randn(40, 6, generator=g, dtype=torch.float64)
    fake = torch.randn(30, 6, generator=g, dtype=torch.float64) * 1.5 + 0.3
    metric = FID()
    for chunk in real.split(7):
        metric.update_features(chunk, real=True)
    for chunk in fake.split(11):
        metric.update_features(chunk, real=False)
    assert float(metric.compute()) == pytest.approx(float(fid_from_features(real, fake)), rel=1e-9)
    metric.reset()
    with pytest.raises(InputError, match="real"):
        metric.compute()


def test_fid_on_images_with_a_small_extractor():
    g = torch.Generator().manual_seed(2)
    nn = torch.nn
    extractor = nn.Sequential(nn.Conv2d(3, 5, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()).double()
    with torch.no_grad():
        extractor[0].weight.copy_(torch.randn(5, 3, 3, 3, generator=g, dtype=torch.float64))
    real = torch.rand(6, 1, 12, 12, 2, generator=g, dtype=torch.float64) * 10
    fake = torch.rand(5, 1, 12, 12, 2, generator=g, dtype=torch.float64) * 8
    value = fid(real, fake, 10.0, feature_extractor=extractor)
    # by hand: axial slices, grey -> 3 channels, [0, 10] -> [-1, 1]
    def prep(v):
        return (v / 5.0 - 1.0).permute(0, 4, 1, 2, 3).reshape(-1, 1, 12, 12).expand(-1, 3, -1, -1)

    with torch.no_grad():
        expected = fid_from_features(extractor(prep(real)), extractor(prep(fake)))
    assert float(value) == pytest.approx(float(expected), rel=1e-10)
    metric = FID(10.0, feature_extractor=extractor)
    metric.update(real[:3], real=True)
    metric.update(real[3:], real=True)
    metric.update(fake, real=False)
    assert float(metric.compute()) == pytest.approx(float(value), rel=1e-9)
    assert float(fid(real, real, 10.0, feature_extractor=extractor)) == pytest.approx(0.0, abs=1e-9)


def test_fid_bad_input(tmp_path):
    with pytest.raises(InputError, match="pt_inception-2015-12-05-6726825d.pth"):
        fid(torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8), 1.0)
    with pytest.raises(InputError, match="does not exist"):
        FID(1.0, weights_path=tmp_path / "missing.pth").update(torch.rand(2, 1, 8, 8), real=True)
    with pytest.raises(InputError, match="at least 2"):
        fid_from_features(torch.randn(1, 3), torch.randn(5, 3))
    with pytest.raises(InputError, match="features per sample"):
        fid_from_features(torch.randn(4, 3), torch.randn(5, 2))
    with pytest.raises(InputError, match="NaN"):
        fid_from_features(torch.tensor([[1.0], [float("nan")]]), torch.randn(5, 1))
    with pytest.raises(InputError, match="covariance"):
        frechet_distance(torch.zeros(2), torch.eye(3), torch.zeros(2), torch.eye(2))


class _MeanStd(torch.nn.Module):
    """Features [mean, std] of each tile's first channel: a transparent extractor for the checks."""

    def forward(self, x):
        f = x[:, 0].reshape(x.shape[0], -1)
        return torch.stack([f.mean(1), f.std(1)], 1)


def test_patch_fid_is_the_frechet_distance_of_the_tile_features_at_the_same_positions():
    from spectdl.metrics.functional import patch_fid, patch_positions

    gen = torch.Generator().manual_seed(0)
    ref = torch.rand(96, 64, generator=gen, dtype=torch.float64) * 10
    img = ref * 1.3 + torch.rand(96, 64, generator=gen, dtype=torch.float64)
    body = torch.zeros(96, 64, dtype=torch.bool)
    body[:, :40] = True
    corners = patch_positions((96, 64), 16, 8, body, 0.5)
    # Column starts 0..24 keep >= half of the 40 body columns in a 16 px tile; 32 and 48 do not.
    assert sorted({j for _, j in corners}) == [0, 8, 16, 24, 32] and len({i for i, _ in corners}) == 11
    ext = _MeanStd()

    def feats(x):  # independently: scipy's statistics of the same tiles, mapped as FID maps [0, 20]
        t = np.stack([x[i:i + 16, j:j + 16].numpy() / 20 * 2 - 1 for i, j in corners])
        f = t.reshape(len(t), -1)
        return np.stack([f.mean(1), f.std(1, ddof=1)], 1)

    fr, fi = feats(ref), feats(img)
    expect = _scipy_fd(fr.mean(0), np.cov(fr.T), fi.mean(0), np.cov(fi.T))
    got = float(patch_fid(img, ref, 20.0, feature_extractor=ext, patch=16, stride=8, mask=body))
    assert got == pytest.approx(expect, rel=1e-8)
    assert float(patch_fid(ref, ref, 20.0, feature_extractor=ext, patch=16, stride=8)) == pytest.approx(0, abs=1e-12)
    with pytest.raises(InputError, match="expected >= 2 for a covariance"):
        patch_fid(img, ref, 20.0, feature_extractor=ext, patch=16, mask=torch.zeros(96, 64))
