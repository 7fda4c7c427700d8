import math

import numpy as np
import pytest
import torch
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

from spectdl.errors import InputError
from spectdl.metrics.scoring import (
    CONVENTIONS,
    METRICS,
    Convention,
    convention,
    image_scores,
    reference_peaks,
    score_cases,
)


def _pairs(shape, n=3, seed=0):
    rng = np.random.default_rng(seed)
    target = rng.random((n, 1) + shape) * 4.0 + 0.5
    pred = target + 0.3 * rng.standard_normal(target.shape)
    return pred, target


def _span(choice, t, fixed=None):
    return {"reference_max": t.max(), "reference_range": t.max() - t.min(), "data_range": fixed}[choice]


def _sk_ssim(t, p, data_range):
    return structural_similarity(t, p, data_range=data_range, gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False)


@pytest.mark.parametrize("shape", [(23, 19), (13, 14, 12)])
@pytest.mark.parametrize("conv", ["reference_max", "reference_range", Convention.fixed(6.0)])
def test_image_scores_match_skimage_and_numpy(shape, conv):
    pred, target = _pairs(shape)
    c = convention(conv)
    got = image_scores(torch.tensor(pred, dtype=torch.float32), torch.tensor(target, dtype=torch.float32),
                       metrics=METRICS + ("mse",), convention=conv)
    assert list(got) == list(METRICS) + ["mse"]
    assert all(v.shape == (3,) and v.dtype == torch.float64 for v in got.values())
    # float32 inputs: the comparison is against float64 copies of the same float32 values.
    pred = pred.astype(np.float32).astype(np.float64)
    target = target.astype(np.float32).astype(np.float64)
    for i in range(3):
        p, t = pred[i, 0], target[i, 0]
        peak = _span(c.psnr_peak, t, c.data_range)
        assert float(got["psnr"][i]) == pytest.approx(peak_signal_noise_ratio(t, p, data_range=peak), abs=1e-6)
        span = _span(c.ssim_data_range, t, c.data_range)
        assert float(got["ssim"][i]) == pytest.approx(_sk_ssim(t, p, span), abs=1e-6)
        assert float(got["rmse"][i]) == pytest.approx(np.sqrt(np.mean((p - t) ** 2)), abs=1e-6)
        assert float(got["mae"][i]) == pytest.approx(np.mean(np.abs(p - t)), abs=1e-6)
        assert float(got["nrmse"][i]) == pytest.approx(np.sqrt(np.mean((p - t) ** 2) / np.mean(t**2)), abs=1e-6)
        assert float(got["mse"][i]) == pytest.approx(mean_squared_error(t, p), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("shape", [(24, 20), (12, 13, 14)])
def test_score_cases_match_skimage_and_record_the_convention(shape):
    pred, target = _pairs(shape, n=2, seed=1)
    preds = {"a": torch.tensor(pred[0, 0]), "b": torch.tensor(pred[1])}  # [*spatial] and [C, *spatial]
    refs = {"a": torch.tensor(target[0, 0]), "b": torch.tensor(target[1:2])}  # and [1, C, *spatial]
    for name in ("reference_max", "reference_range"):
        rows = score_cases(preds, refs, convention=name, method="net", spatial_dims=len(shape))
        assert len(rows) == 2 * len(METRICS)
        assert all(r["convention"] == name and r["method"] == "net" for r in rows)
        assert all(set(r) == {"case", "method", "metric", "value", "convention"} for r in rows)
        value = {(r["case"], r["metric"]): r["value"] for r in rows}
        for i, case in enumerate(("a", "b")):
            p, t = pred[i, 0], target[i, 0]
            span = _span(name, t)
            assert value[case, "psnr"] == pytest.approx(peak_signal_noise_ratio(t, p, data_range=span), abs=1e-6)
            assert value[case, "ssim"] == pytest.approx(_sk_ssim(t, p, span), abs=1e-6)
            assert value[case, "rmse"] == pytest.approx(np.sqrt(np.mean((p - t) ** 2)), abs=1e-6)
            assert value[case, "mae"] == pytest.approx(np.mean(np.abs(p - t)), abs=1e-6)
    rows = score_cases(preds, refs, metrics=("psnr",), convention=Convention.fixed(2.5), spatial_dims=len(shape))
    assert [r["convention"] for r in rows] == ["data_range=2.5"] * 2 and "method" not in rows[0]
    assert rows[0]["value"] == pytest.approx(peak_signal_noise_ratio(target[0, 0], pred[0, 0], data_range=2.5))


def test_conventions_registry_and_resolution():
    assert {"reference_max", "reference_range"} <= set(CONVENTIONS)
    bone = CONVENTIONS["reference_max"]
    assert (bone.psnr_peak, bone.ssim_data_range, bone.data_range) == ("reference_max", "reference_max", None)
    fixed = Convention.fixed(2)
    assert fixed.to_dict() == {"name": "data_range=2.0", "psnr_peak": "data_range", "data_range": 2.0,
                               "ssim_data_range": "data_range", "nrmse_normalization": "euclidean",
                               "ssim_constants": None}
    assert convention(fixed.name) == fixed  # recorded names resolve back
    assert convention(bone) is bone
    with pytest.raises(InputError, match=r"'bone'.*reference_max.*reference_range"):
        convention("bone")
    with pytest.raises(InputError, match="data_range"):
        Convention("x", psnr_peak="data_range")
    with pytest.raises(InputError, match="psnr_peak"):
        Convention("x", psnr_peak="max")
    with pytest.raises(InputError, match="unknown convention"):
        image_scores(torch.rand(1, 1, 12, 12), torch.rand(1, 1, 12, 12), convention="skimage")


def test_a_bare_3d_tensor_is_a_volume_unless_spatial_dims_says_2():
    x = torch.rand(1, 24, 20)
    with pytest.raises(InputError, match=r"case a: pred: spatial shape \(1, 24, 20\) is too small"):
        score_cases({"a": x}, {"a": x}, metrics=("ssim",))
    rows = score_cases({"a": x}, {"a": x}, metrics=("ssim",), spatial_dims=2)
    assert rows[0]["value"] == pytest.approx(1.0)
    with pytest.raises(InputError, match=r"case a: prediction has shape \(2, 1, 24, 20\)"):
        score_cases({"a": x.expand(2, 1, 24, 20)}, {"a": x}, spatial_dims=2)


def test_bad_inputs_raise_input_error():
    a, b = torch.rand(16, 16), torch.rand(16, 16)
    with pytest.raises(InputError, match=r"predictions lacks case\(s\) \['y'\].*references lacks case\(s\) \['z'\]"):
        score_cases({"x": a, "z": a}, {"x": b, "y": b})
    with pytest.raises(InputError, match=r"case x: prediction shape \(16, 16\) differs from reference shape \(16, 15\)"):
        score_cases({"x": a}, {"x": b[:, :15]})
    with pytest.raises(InputError, match=r"unknown metric.*'lpips'"):
        score_cases({"x": a}, {"x": b}, metrics=("psnr", "lpips"))
    with pytest.raises(InputError, match="unknown metric"):
        image_scores(a[None, None], b[None, None], metrics=("PSNR",))
    with pytest.raises(InputError, match="differs from target shape"):
        image_scores(a[None, None], b[None, None, :15])
    # non-positive peak, for the default and for a flat reference under reference_range
    with pytest.raises(InputError, match=r"case x: target: the reference maximum .*'reference_max'"):
        score_cases({"x": a}, {"x": -b})
    flat = torch.ones(1, 1, 16, 16)
    with pytest.raises(InputError, match=r"max − min is \[0.0\].*'reference_range'"):
        image_scores(a[None, None], flat, convention="reference_range")
    # ... but metrics without a peak need none
    assert set(image_scores(a[None, None], -b[None, None], metrics=("rmse", "mae"))) == {"rmse", "mae"}


def test_small_images_raise_for_ssim_unless_skipped():
    a, b = torch.rand(2, 1, 16, 8), torch.rand(2, 1, 16, 8)
    with pytest.raises(InputError, match=r"too small for SSIM.*skip_small"):
        image_scores(a, b)
    got = image_scores(a, b, skip_small=True)
    assert list(got) == ["psnr", "rmse", "mae", "nrmse"]


def test_mask_and_regions():
    pred, target = _pairs((20, 22), n=1, seed=2)
    p, t = pred[0, 0], target[0, 0]
    lesion = np.zeros(p.shape, bool)
    lesion[6:14, 5:15] = True
    body = np.ones(p.shape, bool)
    body[:, :2] = False
    masks = {"lesion": {"c": torch.tensor(lesion)}, "body": {"c": torch.tensor(body)}}
    rows = score_cases({"c": torch.tensor(p)}, {"c": torch.tensor(t)}, masks=masks, method="m")
    assert len(rows) == 2 * len(METRICS)
    assert [r["region"] for r in rows] == ["lesion"] * 5 + ["body"] * 5
    value = {(r["region"], r["metric"]): r["value"] for r in rows}
    for region, m in (("lesion", lesion), ("body", body)):
        d = p[m] - t[m]
        peak = t[m].max()
        assert value[region, "rmse"] == pytest.approx(np.sqrt(np.mean(d**2)), abs=1e-9)
        assert value[region, "mae"] == pytest.approx(np.mean(np.abs(d)), abs=1e-9)
        assert value[region, "psnr"] == pytest.approx(10 * np.log10(peak**2 / np.mean(d**2)), abs=1e-9)
        # SSIM in the region: skimage's full map (data range = the region's reference max),
        # averaged over the region's voxels inside the 5-voxel border crop.
        _, smap = structural_similarity(t, p, data_range=peak, gaussian_weights=True, sigma=1.5,
                                        use_sample_covariance=False, full=True)
        inner = np.zeros_like(m)
        inner[5:-5, 5:-5] = m[5:-5, 5:-5]
        assert value[region, "ssim"] == pytest.approx(smap[inner].mean(), abs=1e-6)
    # one mask per case (no regions): no region column
    rows = score_cases({"c": torch.tensor(p)}, {"c": torch.tensor(t)}, masks={"c": torch.tensor(lesion)})
    assert "region" not in rows[0] and rows[0]["value"] == value["lesion", "psnr"]
    with pytest.raises(InputError, match=r"masks\['lesion'\] lacks case\(s\) \['d'\]"):
        score_cases({"c": torch.tensor(p), "d": torch.tensor(p)}, {"c": torch.tensor(t), "d": torch.tensor(t)},
                    masks={"lesion": {"c": torch.tensor(lesion)}})


def test_reference_peaks_and_identical_images():
    t = torch.tensor([[[[1.0, 3.0], [2.0, 5.0]]]])
    peaks = reference_peaks(t, "reference_range")
    assert peaks["psnr"].tolist() == [4.0] and peaks["ssim"].tolist() == [4.0]
    assert reference_peaks(t)["psnr"].tolist() == [5.0]
    assert math.isinf(float(image_scores(t, t, metrics="psnr")["psnr"][0]))


@pytest.mark.parametrize("shape", [(23, 19), (13, 14, 12)])
def test_absolute_ssim_constants_and_prediction_peak_match_skimage(shape):
    """The myocardial perfusion paper's conventions: SSIM with absolute C1 = 0.01, C2 = 0.02 (skimage with
    data_range 1 and K = √C gives exactly those constants), and a PSNR peak of max(pred)."""
    pred, target = _pairs(shape, seed=3)
    pred, target = pred * 100.0, target * 100.0  # counts in the hundreds, where the choice matters
    got = image_scores(torch.tensor(pred), torch.tensor(target), metrics=("psnr", "ssim"),
                       convention="reference_max_c0.01_0.02")
    pmax = image_scores(torch.tensor(pred), torch.tensor(target), metrics=("psnr",), convention="prediction_max")
    default = image_scores(torch.tensor(pred), torch.tensor(target), metrics=("ssim",), convention="reference_max")
    for i in range(3):
        p, t = pred[i, 0], target[i, 0]
        sk = structural_similarity(t, p, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                   use_sample_covariance=False, K1=0.1, K2=math.sqrt(0.02))
        assert float(got["ssim"][i]) == pytest.approx(sk, abs=1e-9)
        assert float(got["psnr"][i]) == pytest.approx(peak_signal_noise_ratio(t, p, data_range=t.max()), abs=1e-9)
        assert float(pmax["psnr"][i]) == pytest.approx(peak_signal_noise_ratio(t, p, data_range=p.max()), abs=1e-9)
    # Tiny absolute constants do not stabilise: the SSIM differs from the K·L one.
    assert not torch.allclose(got["ssim"], default["ssim"], atol=1e-4)


def test_absolute_ssim_constants_are_checked():
    for bad in [(0.01,), (0.0, 0.02), (float("nan"), 0.02), "ab"]:
        with pytest.raises(InputError, match="ssim_constants"):
            Convention("x", ssim_constants=bad)
    with pytest.raises(InputError, match="prediction_max"):
        reference_peaks(torch.ones(1, 1, 12, 12), "prediction_max")
