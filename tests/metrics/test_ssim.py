import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from spectdl.errors import InputError
from spectdl.metrics import SSIM
from spectdl.metrics.functional import ssim, ssim_map


def _pair(shape, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.random(shape) * 3.0
    b = a + 0.4 * rng.standard_normal(shape)
    return a, b


def _sk(a, b, data_range, sigma=1.5, win_size=None, full=False):
    return structural_similarity(
        a, b, data_range=data_range, gaussian_weights=True, sigma=sigma,
        use_sample_covariance=False, win_size=win_size, full=full,
    )


@pytest.mark.parametrize("shape", [(23, 19), (13, 14, 12)])
def test_ssim_matches_skimage_2d_3d(shape):
    a, b = _pair(shape)
    ref, ref_map = _sk(a, b, 3.0, full=True)
    t = lambda x: torch.tensor(x)[None, None]  # noqa: E731
    assert float(ssim(t(b), t(a), 3.0)) == pytest.approx(ref, abs=1e-6)
    assert np.abs(ssim_map(t(b), t(a), 3.0)[0, 0].numpy() - ref_map).max() < 1e-6


def test_ssim_other_windows_match_skimage():
    # sigma 1 with a 7-wide crop and the uniform window both exercise the reflected border.
    a, b = _pair((16, 15), seed=1)
    t = lambda x: torch.tensor(x)[None, None]  # noqa: E731
    assert float(ssim(t(b), t(a), 3.0, gaussian_sigma=1.0, win_size=7)) == pytest.approx(
        _sk(a, b, 3.0, sigma=1.0, win_size=7), abs=1e-6)
    ref = structural_similarity(a, b, data_range=3.0, win_size=7, use_sample_covariance=False)
    assert float(ssim(t(b), t(a), 3.0, gaussian_sigma=None, win_size=7)) == pytest.approx(ref, abs=1e-6)


def test_ssim_batch_channels_reduction_and_per_image_range():
    pairs = [_pair((14, 14), seed=s) for s in range(3)]
    pred = torch.tensor(np.stack([p[1] for p in pairs]))[:, None]
    target = torch.tensor(np.stack([p[0] for p in pairs]))[:, None]
    ranges = torch.tensor([3.0, 2.0, 5.0], dtype=torch.float64)
    per = ssim(pred, target, ranges, reduction="none")
    ref = [_sk(a, b, float(r)) for (a, b), r in zip(pairs, ranges)]
    assert per.shape == (3,)
    np.testing.assert_allclose(per.numpy(), ref, atol=1e-6)
    assert float(ssim(pred, target, ranges)) == pytest.approx(np.mean(ref), abs=1e-6)
    assert float(ssim(pred, target, ranges, reduction="sum")) == pytest.approx(np.sum(ref), abs=1e-6)
    # two channels: mean over channels, as skimage's channel_axis does
    two = torch.cat([pred[:1], pred[1:2]], 1), torch.cat([target[:1], target[1:2]], 1)
    ref_c = structural_similarity(
        np.stack([pairs[0][1], pairs[1][1]], -1), np.stack([pairs[0][0], pairs[1][0]], -1),
        data_range=3.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, channel_axis=-1,
    )
    assert float(ssim(*two, 3.0)) == pytest.approx(ref_c, abs=1e-6)


def test_ssim_identical_is_one_and_masked_mean_of_map():
    a, b = _pair((15, 15, 15), seed=2)
    x = torch.tensor(a)[None, None]
    y = torch.tensor(b)[None, None]
    assert float(ssim(x, x, 3.0)) == pytest.approx(1.0, abs=1e-12)
    mask = torch.zeros(15, 15, 15, dtype=torch.bool)
    mask[6:9, 5:10, 7:12] = True
    _, ref_map = _sk(b, a, 3.0, full=True)
    # skimage's 5-voxel border crop keeps voxels 5..9 on each axis
    inside = np.zeros((15, 15, 15), dtype=bool)
    inside[5:10, 5:10, 5:10] = True
    expected = ref_map[mask.numpy() & inside].mean()
    assert float(ssim(y, x, 3.0, mask=mask)) == pytest.approx(expected, abs=1e-6)


def test_ssim_is_differentiable_float32():
    a, b = _pair((16, 16), seed=3)
    x = torch.tensor(b, dtype=torch.float32)[None, None].requires_grad_(True)
    y = torch.tensor(a, dtype=torch.float32)[None, None]
    loss = 1 - ssim(x, y, 3.0)
    loss.backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert float(ssim(x.detach(), y, 3.0)) == pytest.approx(_sk(a, b, 3.0), abs=1e-5)
    # a numerical derivative check in float64 on one voxel
    x64 = torch.tensor(b)[None, None].requires_grad_(True)
    y64 = torch.tensor(a)[None, None]
    ssim(x64, y64, 3.0).backward()
    h = 1e-6
    xp, xm = x64.detach().clone(), x64.detach().clone()
    xp[0, 0, 8, 8] += h
    xm[0, 0, 8, 8] -= h
    num = (float(ssim(xp, y64, 3.0)) - float(ssim(xm, y64, 3.0))) / (2 * h)
    assert float(x64.grad[0, 0, 8, 8]) == pytest.approx(num, rel=1e-5)


def test_ssim_bad_input():
    x = torch.rand(1, 1, 16, 16)
    with pytest.raises(InputError, match="shape"):
        ssim(x, torch.rand(1, 1, 16, 15), 1.0)
    bad = x.clone()
    bad[0, 0, 3, 3] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        ssim(bad, x, 1.0)
    with pytest.raises(InputError, match="empty"):
        ssim(x, x, 1.0, mask=torch.zeros(16, 16))
    with pytest.raises(InputError, match="too small"):
        ssim(torch.rand(1, 1, 8, 16), torch.rand(1, 1, 8, 16), 1.0)
    with pytest.raises(InputError, match="data_range"):
        ssim(x, x, 0.0)
    with pytest.raises(InputError, match="win_size"):
        ssim(x, x, 1.0, win_size=4)


def test_ssim_class_accumulates_the_mean_of_per_image_values():
    pairs = [_pair((12, 13, 11), seed=s) for s in range(3)]
    metric = SSIM(3.0)
    metric.update(torch.tensor(pairs[0][1])[None, None], torch.tensor(pairs[0][0])[None, None])
    metric.update(torch.tensor(np.stack([p[1] for p in pairs[1:]]))[:, None],
                  torch.tensor(np.stack([p[0] for p in pairs[1:]]))[:, None])
    ref = np.mean([_sk(a, b, 3.0) for a, b in pairs])
    assert float(metric.compute()) == pytest.approx(ref, abs=1e-6)
