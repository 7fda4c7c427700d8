import json

import numpy as np
import pandas as pd
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from spectdl.errors import InputError
from spectdl.studies.evaluate import evaluate_manifest


def _cases(tmp_path, n=6):
    rng = np.random.default_rng(0)
    x, y = np.meshgrid(np.linspace(-1, 1, 24), np.linspace(-1, 1, 24), indexing="ij")
    rows = []
    (tmp_path / "pred").mkdir()
    for i in range(n):
        ref = (np.exp(-(x**2 + y**2) * 3) * (5 + i)).astype(np.float32)
        noisy = ref + rng.normal(0, 0.5, ref.shape).astype(np.float32)
        better = ref + rng.normal(0, 0.2, ref.shape).astype(np.float32)
        np.save(tmp_path / f"c{i}_ref.npy", ref)
        np.save(tmp_path / f"c{i}_low.npy", noisy)
        np.save(tmp_path / "pred" / f"c{i}.npy", better)
        rows.append({"case_id": f"c{i}", "split": "test", "input": f"c{i}_low.npy", "target": f"c{i}_ref.npy"})
    pd.DataFrame(rows).to_csv(tmp_path / "cases.csv", index=False)
    return tmp_path / "cases.csv"


def test_per_case_metrics_match_skimage_and_the_test_is_paired(tmp_path):
    manifest = _cases(tmp_path)
    res = evaluate_manifest(manifest, tmp_path / "pred", tmp_path / "eval")
    df = pd.read_csv(res.metrics_csv)
    # Long format: 6 cases × 2 methods × 4 metrics, every row naming its convention.
    assert list(df.columns) == ["case", "method", "metric", "value", "convention"]
    assert len(df) == 6 * 2 * 4
    assert set(df["method"]) == {"prediction", "input"}
    assert set(df["metric"]) == {"psnr", "ssim", "nrmse", "mae"}
    assert set(df["convention"]) == {"reference_max"}
    value = df.set_index(["case", "method", "metric"])["value"]
    ref = np.load(tmp_path / "c0_ref.npy").astype(np.float64)
    enh = np.load(tmp_path / "pred" / "c0.npy").astype(np.float64)
    low = np.load(tmp_path / "c0_low.npy").astype(np.float64)
    peak = ref.max()
    assert value["c0", "prediction", "psnr"] == pytest.approx(peak_signal_noise_ratio(ref, enh, data_range=peak), rel=1e-6)
    assert value["c0", "input", "psnr"] == pytest.approx(peak_signal_noise_ratio(ref, low, data_range=peak), rel=1e-6)
    ssim_ref = structural_similarity(ref, enh, data_range=peak, gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False)
    assert value["c0", "prediction", "ssim"] == pytest.approx(ssim_ref, abs=1e-6)
    assert value["c0", "prediction", "mae"] == pytest.approx(np.abs(enh - ref).mean(), rel=1e-6)
    summary = json.loads(res.summary_json.read_text())
    assert summary["psnr_db_prediction"] > summary["psnr_db_baseline"]
    # The summary keys the CLI prints are unchanged; the means are those of the long table.
    for m, name in (("psnr_db", "psnr"), ("ssim", "ssim"), ("nrmse", "nrmse"), ("mae", "mae")):
        assert {f"{m}_prediction", f"{m}_baseline", f"{m}_wilcoxon"} <= set(summary)
        rows = df[df["metric"] == name]
        assert summary[f"{m}_prediction"] == pytest.approx(rows[rows["method"] == "prediction"]["value"].mean())
        assert summary[f"{m}_baseline"] == pytest.approx(rows[rows["method"] == "input"]["value"].mean())
    assert res.summary == summary
    # Six cases all favour the prediction: the exact two-sided signed-rank p is 2/2^6.
    assert summary["psnr_db_wilcoxon"]["p_value"] == pytest.approx(2 / 64)


def test_missing_prediction_and_shape_mismatch_are_clear(tmp_path):
    manifest = _cases(tmp_path, 2)
    (tmp_path / "pred" / "c0.npy").unlink()
    with pytest.raises(InputError, match="no prediction for case c0"):
        evaluate_manifest(manifest, tmp_path / "pred", tmp_path / "e")
    np.save(tmp_path / "pred" / "c0.npy", np.zeros((24, 24), np.float32))
    np.save(tmp_path / "pred" / "c1.npy", np.zeros((5, 5), np.float32))
    with pytest.raises(InputError, match=r"case c1: prediction .* shape \(5, 5\)"):
        evaluate_manifest(manifest, tmp_path / "pred", tmp_path / "e2")


def test_without_baseline_only_the_prediction_is_scored(tmp_path):
    manifest = _cases(tmp_path, 3)
    res = evaluate_manifest(manifest, tmp_path / "pred", tmp_path / "eval", baseline=False)
    df = pd.read_csv(res.metrics_csv)
    assert set(df["method"]) == {"prediction"} and len(df) == 3 * 4
    assert "psnr_db_prediction" in res.summary and "psnr_db_baseline" not in res.summary


def test_existing_metrics_are_replaced_only_with_overwrite_and_inputs_never(tmp_path):
    manifest = _cases(tmp_path, n=3)
    evaluate_manifest(manifest, tmp_path / "pred", tmp_path / "eval")
    (tmp_path / "eval" / "metrics.csv").write_text("old")
    with pytest.raises(InputError, match="metrics.csv.*overwrite"):
        evaluate_manifest(manifest, tmp_path / "pred", tmp_path / "eval")
    assert (tmp_path / "eval" / "metrics.csv").read_text() == "old"
    res = evaluate_manifest(manifest, tmp_path / "pred", tmp_path / "eval", overwrite=True)
    assert pd.read_csv(res.metrics_csv)["case"].nunique() == 3
    before = (tmp_path / "pred" / "c0.npy").read_bytes()
    with pytest.raises(InputError, match="lies inside, the input"):
        evaluate_manifest(manifest, tmp_path / "pred", tmp_path / "pred", overwrite=True)
    with pytest.raises(InputError, match="not a folder"):
        evaluate_manifest(manifest, tmp_path / "pred", tmp_path / "c0_ref.npy", overwrite=True)
    assert (tmp_path / "pred" / "c0.npy").read_bytes() == before
    assert not (tmp_path / "pred" / "metrics.csv").exists()
