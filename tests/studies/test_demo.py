"""The README's main job, at the reduced CI size: the demo runs end to end and reports honestly."""

import json

import pandas as pd
import pytest

from spectdl.report.html import build_demo_report
from spectdl.studies.demo import DemoConfig, run_demo


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    result = run_demo(DemoConfig(out_dir=out, quick=True, seed=3))
    return result, build_demo_report(result.run_dir)


def test_demo_writes_every_result_file(demo_run):
    result, report = demo_run
    for name in ("config.json", "summary.json", "metrics_slices.csv", "metrics_volumes.csv", "spheres.csv",
                 "training.csv", "images.npz", "report.html"):
        assert (result.run_dir / name).is_file(), name
    for name in ("image_grid.png", "psnr_boxplot.png", "ssim_boxplot.png", "sphere_table.png", "training_loss.png"):
        assert (result.run_dir / "figures" / name).stat().st_size > 5000


def test_demo_metrics_are_consistent_with_the_saved_tables(demo_run):
    result, report = demo_run
    summary = json.loads((result.run_dir / "summary.json").read_text())
    slices = pd.read_csv(result.run_dir / "metrics_slices.csv")
    assert summary["psnr_input_db"] == pytest.approx(slices["psnr_input_db"].mean())
    assert summary["enhanced_better_psnr"] == (summary["psnr_enhanced_db"] > summary["psnr_input_db"])
    # A 1/7-count OSEM image of a NEMA phantom is noisy but recognisable: PSNR well above 20 dB.
    assert 20.0 < summary["psnr_input_db"] < 50.0
    assert 0.0 < summary["tests"]["psnr"]["p_value"] <= 1.0
    spheres = pd.read_csv(result.run_dir / "spheres.csv")
    truth = spheres[spheres["method"] == "truth"]
    # The true phantom's 37 mm sphere: SUVmax is its ratio (8:1 in the quick test case); its mean over
    # the voxels whose centres lie inside is lower only by the partial-volume edge voxels.
    big = truth[truth["diameter_mm"] == 37.0]
    assert float(big["suv_max"].iloc[0]) == pytest.approx(8.0, rel=1e-5)
    assert 6.5 < float(big["suv_mean"].iloc[0]) < 8.0
    html = report.read_text()
    assert "Image quality against the standard-count scan" in html and "Wilcoxon p" in html
    verdict = "are <b>better</b>" if summary["enhanced_better_psnr"] else "are <b>not better</b>"
    assert verdict in html


def test_demo_is_deterministic_for_a_seed(demo_run, tmp_path):
    result, _ = demo_run
    again = run_demo(DemoConfig(out_dir=tmp_path, quick=True, seed=3))
    a = pd.read_csv(result.run_dir / "metrics_volumes.csv")
    b = pd.read_csv(again.run_dir / "metrics_volumes.csv")
    pd.testing.assert_frame_equal(a, b)
