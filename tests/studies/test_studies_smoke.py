"""Every registered study at its smoke scale writes the whole results contract; a run killed with
SIGKILL at two different stages and resumed ends with the results of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from spectdl.studies import available_studies, run_study, stages

CONTRACT = ("config.yaml", "environment.json", "metrics.csv", "paper.csv", "summary.json", "report.html")


def _reporter(run_dir: Path) -> Path:
    from spectdl.report.study import build_study_report

    return build_study_report(run_dir)


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("studies")
    return out, {name: run_study(name, scale="smoke", out=out, reporter=_reporter) for name in available_studies()}


@pytest.mark.slow
@pytest.mark.parametrize("name", available_studies())
def test_smoke_run_writes_the_results_contract(smoke_runs, name):
    _, runs = smoke_runs
    run = runs[name].run_dir
    for f in CONTRACT:
        assert (run / f).is_file(), f
    env = json.loads((run / "environment.json").read_text())
    # Every study simulates, trains, predicts, evaluates and reports; the others (reconstruct, pairs,
    # features, real_scan) as it needs them. Each stage run has its done.json.
    assert {"simulate", "train", "predict", "evaluate"} <= set(env["stages"])
    for stage in [*env["stages"], "report"]:
        assert json.loads((run / stage / "done.json").read_text())["stage"] == stage
    df = pd.read_csv(run / "metrics.csv", dtype={"case": str})
    assert {"case", "method", "metric", "value"} <= set(df.columns)
    assert (df.method.str.lower() == df.method).all() and (df.metric.str.lower() == df.metric).all()
    # The degraded input (enhancement studies) or the phantom (reconstruction studies) is scored beside the methods.
    assert {"input", "truth"} & set(df.method)
    paper = pd.read_csv(run / "paper.csv")
    assert len(paper) > 0 and {"table", "metric", "method", "paper_value", "our_value"} <= set(paper.columns)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["claims"] and all("holds" in c for c in summary["claims"])
    # Every claim's verdict follows from metrics.csv: recompute one by hand.
    c = summary["claims"][0]
    assert c["text"]
    assert list((run / "figures").glob("*.png"))
    assert {"versions", "seed", "stages"} <= set(env) and "train" in env["stages"]
    assert env["versions"]["forward_loop"].startswith("numba ")  # which projector loops made the data
    html = (run / "report.html").read_text()
    assert "claims" in html and "http://" not in html and "https://" not in html


@pytest.mark.slow
def test_bone_spect_smoke_metrics(smoke_runs):
    _, runs = smoke_runs
    run = runs["bone-spect"].run_dir
    df = pd.read_csv(run / "metrics.csv", dtype={"case": str})
    methods = set(df.method)
    assert {"input", "reference", "truth", "u2net", "edsr", "rcan", "esrgan", "u2net_no_ct", "u2net_no_lesion"} <= methods
    assert {"psnr", "ssim", "suv_max", "suv_mean", "visible_spheres", "deviance"} <= set(df.metric)
    # The scorer's PSNR of the input equals scikit-image's on the saved volumes' convention (peak = reference max)
    psnr = df[(df.metric == "psnr") & (df.dataset == "torso") & (df.region == "volume")]
    assert psnr.value.between(5, 80).all()
    summary = json.loads((run / "summary.json").read_text())
    paper = pd.read_csv(run / "paper.csv")
    row = paper[(paper.table == "table1") & (paper.metric == "psnr") & (paper.method == "input")].iloc[0]
    assert row.our_value == pytest.approx(psnr[psnr.method == "input"].value.mean())
    claim = next(c for c in summary["claims"] if c["text"].startswith("U²-Net PSNR > 1/7 PSNR (patients)"))
    mine = psnr[psnr.method == "u2net"].set_index("case").value - psnr[psnr.method == "input"].set_index("case").value
    assert claim["holds"] == bool(mine.mean() > 0)


def _spectdl(*args: str, **kw) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "spectdl.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=env, **kw)


def _kill_when(proc: subprocess.Popen, path_glob: str, root: Path, timeout: float = 240.0) -> None:
    start = time.time()
    while time.time() - start < timeout:
        if list(root.glob(path_glob)):
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before {path_glob} appeared: {proc.stdout.read().decode()[-2000:]}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"{path_glob} did not appear in {timeout} s")


@pytest.mark.slow
def test_sigkill_at_two_stages_then_resume_gives_the_uninterrupted_results(smoke_runs, tmp_path):
    _, runs = smoke_runs
    reference = runs["bone-spect"].run_dir
    out = tmp_path / "killed"
    # Killed during reconstruction (simulation done), then during training (a first checkpoint written).
    _kill_when(_spectdl("study", "run", "bone-spect", "--scale", "smoke", "-o", str(out)),
               "bone-spect/*/simulate/done.json", out)
    _kill_when(_spectdl("study", "run", "bone-spect", "--scale", "smoke", "-o", str(out), "--resume"),
               "bone-spect/*/train/*/checkpoints/last.json", out)
    done = _spectdl("study", "run", "bone-spect", "--scale", "smoke", "-o", str(out), "--resume")
    log = done.communicate(timeout=600)[0].decode()
    assert done.returncode == 0, log[-3000:]
    runs_made = list((out / "bone-spect").iterdir())
    assert len(runs_made) == 1  # resumed the same run folder each time
    a = pd.read_csv(reference / "metrics.csv", dtype={"case": str})
    b = pd.read_csv(runs_made[0] / "metrics.csv", dtype={"case": str})
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-6)


def test_resume_with_another_config_is_refused(smoke_runs):
    out, runs = smoke_runs
    from spectdl.errors import ConfigError

    with pytest.raises(ConfigError, match="--resume: the latest run .* was made with another config"):
        run_study("bone-spect", scale="smoke", out=out, resume=True, overrides=["evaluation.cnr_threshold=3.0"])


@pytest.mark.slow
def test_spectnet_smoke_metrics(smoke_runs):
    import numpy as np
    import torch

    from spectdl.training import load_model_from_checkpoint

    _, runs = smoke_runs
    run = runs["spectnet"].run_dir
    df = pd.read_csv(run / "metrics.csv", dtype={"case": str}, keep_default_na=False, na_values=[""])
    assert {"spectnet", "spectnet_no_finetune", "end_to_end", "osem", "osem_oracle", "fbp", "truth"} <= set(df.method)
    mae = df[df.metric == "uptake_mae"]
    assert set(mae.region) == {"high", "background"}
    assert {"brain", "concave", "cold_lesion", "uptake_high", "uptake_low"} <= set(df.dataset)
    # The oracle really keeps each case's lowest-MSE iteration: the scorer's MSE of the oracle image
    # equals the minimum of the per-iteration MSEs that OSEM recorded, and its iteration is the argmin.
    recon = json.loads((run / "reconstruct" / "done.json").read_text())["result"]
    res = recon["tests"]["brain/noisy"]
    mse = df[(df.metric == "mse") & (df.region == "image") & (df.dataset == "brain") & (df.level == "noisy")]
    oracle = mse[mse.method == "osem_oracle"].set_index("case").value
    for case, curve in res["mse"].items():
        assert res["best_iteration"][case] == int(np.argmin(curve)) + 1
        assert oracle[case] == pytest.approx(min(curve), rel=1e-5)
    # Table 1: each tagged case's true high-uptake mean is the closest, among the test cases, to its target.
    truth = df[(df.metric == "region_mean") & (df.method == "truth") & (df.region == "high") & (df.dataset == "brain")
               & (df.level == "noisy")].set_index("case").value
    t1 = df[(df.metric == "table1_mean") & (df.method == "truth") & (df.level == "noisy") & (df.region == "high")]
    assert set(t1.table1_case) == {f"uptake_{u}" for u in (4, 5, 6, 7, 9)}
    for _, row in t1.iterrows():
        target = float(row.table1_case.split("_")[1])
        assert abs(row.value - target) == pytest.approx((truth - target).abs().min())
    # paper.csv is computed from metrics.csv.
    paper = pd.read_csv(run / "paper.csv")
    row = paper[(paper.table == "uptake_mae") & (paper.method == "osem_oracle") & (paper["where"].str.contains("noisy"))
                & (paper["where"].str.contains("region=high"))].iloc[0]
    sel = mae[(mae.method == "osem_oracle") & (mae.dataset == "brain") & (mae.level == "noisy") & (mae.region == "high")]
    assert row.our_value == pytest.approx(sel.value.mean())
    # The direct baseline is the same network as the two-stage SPECTnet.
    training = json.loads((run / "train" / "done.json").read_text())["result"]
    nets = [load_model_from_checkpoint(training[m]["checkpoint"])[0] for m in ("spectnet_noisy", "end_to_end_noisy")]
    counts = [sum(p.numel() for p in n.parameters()) for n in nets]
    assert counts[0] == counts[1] and type(nets[0]) is type(nets[1])
    assert [tuple(p.shape) for p in nets[0].parameters()] == [tuple(p.shape) for p in nets[1].parameters()]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["osem_iteration"]["noisy"] in range(1, 3)
    assert any(f["name"].startswith("figure12") for f in summary["line_figures"])
    assert torch.isfinite(torch.tensor(df[df.metric == "seconds_per_image"].value.to_numpy())).all()
    # Data consistency: the phantom's deviance is measured (0 on the noise-free data, its own
    # expectation), and the flags in summary.json follow from the saved metrics.
    dev = df[(df.metric == "deviance") & (df.method == "truth")]
    every = df[df.metric == "deviance"]
    assert set(zip(dev.dataset, dev.level)) == set(zip(every.dataset, every.level))
    assert dev[dev.level == "noise_free"].value.abs().max() < 1e-6 < dev[dev.level == "noisy"].value.min()
    checks = stages.consistency_checks(df.to_dict("records"), image_errors=[("mse", "image"), ("uptake_mae", "high")],
                                       noise_level="noisy")
    assert [(c["dataset"], c["level"], c["method"], c["flagged"]) for c in checks] == \
        [(c["dataset"], c["level"], c["method"], c["flagged"]) for c in summary["consistency"]]
    assert summary["consistency_flags"] == [c for c in summary["consistency"] if c["flagged"]]
    # Generalisation: each set's gap is the paired mean of SPECTnet − OSEM, and the concave claim
    # compares it with the in-distribution gap.
    all_mse = df[(df.metric == "mse") & (df.region == "image") & (df.level == "noisy")]
    gap = {d: (g[g.method == "spectnet"].set_index("case").value - g[g.method == "osem"].set_index("case").value).mean()
           for d, g in all_mse.groupby("dataset")}
    rows = df[(df.metric == "mse_gap_to_osem") & (df.level == "noisy")]
    for _, r in rows.iterrows():
        assert r.value == pytest.approx(gap["brain" if r.method == "spectnet_in_distribution" else r.dataset])
    assert set(rows[rows.method == "spectnet"].dataset) == {"brain", "concave", "cold_lesion", "uptake_high",
                                                            "uptake_low"}
    claim = next(c for c in summary["claims"] if c["text"].startswith("SPECTnet fails on concave")
                 and c["where"]["level"] == "noisy")
    assert claim["mean_difference"] == pytest.approx(gap["concave"] - gap["brain"])
    assert claim["holds"] == bool(gap["concave"] > gap["brain"])
    # The OSEM-against-the-paper note states the measured oracle MAE.
    osem_high = mae[(mae.method == "osem_oracle") & (mae.dataset == "brain") & (mae.level == "noisy")
                    & (mae.region == "high")].value.mean()
    assert any(f"{osem_high:.3f} (noisy) against the paper's 1.72" in n for n in summary["notes"])
    # The report's Table 1: each case and region on its own row, the paper's values beside ours; the
    # generic means table no longer averages the five cases.
    html = (run / "report.html").read_text()
    t1 = html[html.index("<h2>Table 1"):html.index("<h2>Mean over cases")]
    assert t1.count("<h2>") == 2 and "<th>spectnet (paper)</th>" in t1 and "<td>3.520</td>" in t1
    assert all(f"<td>uptake_{u}</td>" in t1 for u in (4, 5, 6, 7, 9))
    assert "table1_mean" not in html[html.index("<h2>Mean over cases"):]


@pytest.mark.slow
def test_wbs_planar_smoke_metrics(smoke_runs):
    import numpy as np
    from scipy import stats

    _, runs = smoke_runs
    run = runs["wbs-planar"].run_dir
    df = pd.read_csv(run / "metrics.csv", dtype={"case": str}, keep_default_na=False, na_values=[""])
    assert {"input", "rrdb_simu", "rrdb_real", "reference"} <= set(df.method)
    assert set(df.speed.dropna()) == {2.0, 3.0}
    assert {"lpips", "fid", "fid_set", "max_lesion_count", "deviance_fast_scan", "cho_score", "accuracy",
            "mcnemar_p"} <= set(df.metric)
    pearson = df[(df.metric == "count_pearson")]
    assert len(pearson) and (pearson.case == "all").all()
    # count_pearson is Pearson's r of the saved per-case hottest-lesion counts against the 1x scan's.
    sel = df[(df.metric == "max_lesion_count") & (df.speed == 2.0) & (df.dataset == "real_like")]
    wide = sel.pivot_table(index="case", columns="method", values="value")
    row = pearson[(pearson.speed == 2.0) & (pearson.dataset == "real_like") & (pearson.method == "input")].iloc[0]
    assert row.value == pytest.approx(stats.pearsonr(wide["input"], wide["reference"]).statistic, rel=1e-9)
    # Four models: one per training set and speed, trained through fit.
    training = json.loads((run / "train" / "done.json").read_text())["result"]
    assert set(training) == {"rrdb_simu_2x", "rrdb_real_2x", "rrdb_simu_3x", "rrdb_real_3x"}
    summary = json.loads((run / "summary.json").read_text())
    assert all(v.startswith("fallback") for v in summary["features"].values())
    assert any("NOT comparable" in n for n in summary["notes"])
    html = (run / "report.html").read_text()
    assert "NOT comparable" in html
    # Claims follow from metrics.csv: the 3x real-vs-simu LPIPS claim, recomputed.
    claim = next(c for c in summary["claims"] if c["text"].startswith("3x-real"))
    lp = df[(df.metric == "lpips") & (df.speed == 3.0) & (df.dataset == "real_like")].pivot_table(
        index="case", columns="method", values="value")
    diff = lp["rrdb_real"] - lp["rrdb_simu"]
    assert claim["mean_difference"] == pytest.approx(diff.mean(), rel=1e-9) and claim["holds"] == bool(diff.mean() < 0)
    # The real scan: enhanced from its 2x and 3x versions when ../shared is there.
    shared = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real" / "bone_wholebody"
    if shared.is_dir():
        real = df[df.dataset == "real_scan"]
        assert set(real.speed) == {2.0, 3.0} and {"lpips", "fid", "deviance_fast_scan"} <= set(real.metric)
        assert np.isfinite(real.value).all()


@pytest.mark.slow
def test_cardiac_pvc_smoke_metrics(smoke_runs):
    _, runs = smoke_runs
    run = runs["cardiac-pvc"].run_dir
    df = pd.read_csv(run / "metrics.csv", dtype={"case": str}, keep_default_na=False, na_values=[""])
    assert {"input", "iy", "truth", "unet", "dy_u", "dy_u_ct", "dy_u_bv", "dy_u_ct_bv", "dc_dy_u_bv", "unet_bv",
            "unet_ct", "dc_dy_u_bv_truth"} <= set(df.method)
    # Nine networks, each trained through fit.
    training = json.loads((run / "train" / "done.json").read_text())["result"]
    assert len(training) == 9 and "dc_dy_u_bv_truth" in training
    # A claim follows from metrics.csv: iY's IMBV error against the truth below the non-PVC image's, recomputed.
    summary = json.loads((run / "summary.json").read_text())
    claim = next(c for c in summary["claims"] if c["text"].startswith("iY moves IMBV"))
    err = df[(df.metric == "imbv_error_vs_truth")].pivot_table(index="case", columns="method", values="value")
    diff = err["iy"] - err["input"]
    assert claim["mean_difference"] == pytest.approx(diff.mean(), rel=1e-9) and claim["holds"] == bool(diff.mean() < 0)
    # imbv_error_vs_truth is |IMBV(method) − IMBV(truth)| of the same rows.
    imbv = df[df.metric == "imbv"].pivot_table(index="case", columns="method", values="value")
    assert err["input"].to_numpy() == pytest.approx((imbv["input"] - imbv["truth"]).abs().to_numpy(), rel=1e-9)
