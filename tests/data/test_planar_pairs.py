import numpy as np
import pytest
import torch
from scipy import ndimage

from spectdl.data.planar_pairs import bladder_mask, count_normalise, register_patch
from spectdl.errors import InputError


def _body():
    rows, cols = np.mgrid[0:120, 0:60]
    img = 5.0 + 20 * np.exp(-((rows - 40.0) ** 2 + (cols - 30.0) ** 2) / 60.0)  # a hot spot (a lesion)
    bladder = ((rows - 95.0) ** 2 + (cols - 30.0) ** 2) <= 36
    img[bladder] = 200.0
    return img, bladder


def test_bladder_mask_finds_the_bladder_in_the_pelvis():
    img, bladder = _body()
    region = np.zeros_like(bladder)
    region[80:115, 10:50] = True
    mask = bladder_mask(img, region, dilate_px=0).numpy()
    np.testing.assert_array_equal(mask, bladder)
    grown = bladder_mask(img, region, dilate_px=1).numpy()
    np.testing.assert_array_equal(grown, ndimage.binary_dilation(bladder, np.ones((3, 3), bool)))
    with pytest.raises(InputError, match="region"):
        bladder_mask(img, np.zeros_like(bladder))


def test_count_normalisation_equalises_totals_outside_the_bladder():
    img, bladder = _body()
    g = torch.Generator().manual_seed(0)
    ref = torch.poisson(torch.as_tensor(img), generator=g)
    fast_expected = torch.as_tensor(img) * 0.4
    fast_expected[torch.as_tensor(bladder)] *= 0.6  # the bladder filled less by the time of the fast scan
    fast = torch.poisson(fast_expected, generator=g)
    excl = torch.as_tensor(bladder)
    scaled, s = count_normalise(fast, ref, excl)
    assert float(scaled[~excl].sum()) == pytest.approx(float(ref[~excl].sum()), rel=1e-12)
    assert s == pytest.approx(float(ref[~excl].sum()) / float(fast[~excl].sum()))
    # Counting the bladder in would have biased the scale.
    _, s_all = count_normalise(fast, ref)
    assert s_all > s * 1.02


@pytest.mark.parametrize("transform", ["translation", "rigid", "affine"])
def test_patch_registration_recovers_a_known_shift(transform):
    rows, cols = np.mgrid[0:64, 0:64]
    fixed = (np.exp(-((rows - 30.0) ** 2 / 40 + (cols - 34.0) ** 2 / 90)) * 100
             + 40 * np.exp(-((rows - 45.0) ** 2 + (cols - 20.0) ** 2) / 15))
    shift = (2.6, -1.7)  # (row, column), pixels
    moving = ndimage.shift(fixed, shift, order=3, mode="constant") * 0.5  # half the counts, moved
    out, rec = register_patch(moving, fixed, transform=transform)
    assert rec["shift_px"] == pytest.approx(shift, abs=0.15)
    inner = (slice(8, -8), slice(8, -8))
    before = np.corrcoef(moving[inner].ravel(), fixed[inner].ravel())[0, 1]
    after = np.corrcoef(out.numpy()[inner].ravel(), fixed[inner].ravel())[0, 1]
    assert after > 0.999 > before


@pytest.mark.parametrize("transform", ["translation", "rigid", "affine"])
def test_the_registration_as_a_replayable_transform_matches_simpleitks_resampling(transform):
    from spectdl.data.transforms import RegisterToReference, replay

    rows, cols = np.mgrid[0:64, 0:64]
    fixed = (np.exp(-((rows - 30.0) ** 2 / 40 + (cols - 34.0) ** 2 / 90)) * 100
             + 40 * np.exp(-((rows - 45.0) ** 2 + (cols - 20.0) ** 2) / 15))
    moving = ndimage.shift(ndimage.rotate(fixed, 2.0, reshape=False, order=3), (2.6, -1.7), order=3) * 0.5
    sample = {"input": torch.as_tensor(np.stack([moving, 2 * moving])), "target": torch.as_tensor(fixed[None])}
    out, spec = RegisterToReference(transform=transform)(sample)
    sitk_out, _ = register_patch(moving, fixed, transform=transform)
    inner = (slice(6, -6), slice(6, -6))
    np.testing.assert_allclose(out["input"][0].numpy()[inner], sitk_out.numpy()[inner], rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(out["input"][1], 2 * out["input"][0])  # one map for every channel
    torch.testing.assert_close(replay(sample, spec)["input"], out["input"])
    after = np.corrcoef(out["input"][0].numpy()[inner].ravel(), fixed[inner].ravel())[0, 1]
    assert after > (0.995 if transform == "translation" else 0.999)
