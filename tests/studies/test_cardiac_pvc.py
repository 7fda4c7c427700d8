"""cardiac-pvc: its config and paper numbers, its helpers against independent references, and the
study at smoke scale (metrics.csv with the issue's method names, numbers recomputed from saved files)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import spectdl
from spectdl.errors import ConfigError
from spectdl.geometry import VoxelGrid
from spectdl.studies import cardiac_pvc as cp
from spectdl.studies import stages
from spectdl.studies.config import resolve_config

YAML = Path(spectdl.__file__).parent / "configs" / "studies" / "cardiac-pvc.yaml"
METHODS = {"input", "iy", "truth", "unet", "dy_u", "dy_u_ct", "dy_u_bv", "dy_u_ct_bv", "dc_dy_u_bv", "unet_bv",
           "unet_ct", "dc_dy_u_bv_truth"}


@pytest.mark.parametrize("scale", ["smoke", "quick", "paper"])
def test_every_scale_keeps_the_paper_geometry_and_the_calibrated_resolution(scale):
    cfg = resolve_config(cp.CardiacPvcConfig, YAML, scale=scale)
    s = cfg.sim
    assert (s.orbit.arc_deg, s.orbit.start_deg, s.orbit.radius_mm) == (180.0, 45.0, 190.0)
    assert (s.resolution.fwhm_mm, s.resolution.distance_mm) == (4.0, 190.0)
    assert s.recon.subsets == 1 and s.recon.calibrate
    # Counts: the same 75 s gate (600 s / 8) spread over the views at every scale.
    assert s.counts.activity.time_range[0] * s.orbit.n_angles == pytest.approx(75.0)
    assert s.counts.activity.injected_mbq == 700.0
    assert set(cfg.methods) == set(cp.NETWORKS) and cfg.methods["dc_dy_u_bv_truth"].target == "truth"
    from spectdl.losses.builder import STUDY_DEFAULTS

    losses = {m: {**STUDY_DEFAULTS["cardiac"], **dict(cfg.train_config(m).loss)} for m in cfg.methods}
    assert {m for m, loss in losses.items() if loss["imbv"] > 0} == {"dy_u_bv", "dy_u_ct_bv", "dc_dy_u_bv", "unet_bv",
                                                                     "dc_dy_u_bv_truth"}
    assert all(loss["ssim_mode"] == "three_plane" and loss["ssim"] == 0.8 for loss in losses.values())
    # The issue's "0.1·Sobel (three planes)", and every term confined to the FOV mask the samples carry.
    assert all(loss["sobel_mode"] == "three_plane" and loss["sobel"] == 0.1 for loss in losses.values())
    assert all(loss["mask_key"] == cp.FOV_KEY for loss in losses.values())
    modes = {m: cfg.train_config(m).model.kwargs["mode"] for m in cfg.methods}
    assert modes["unet"] == modes["unet_ct"] == "static" and modes["dc_dy_u_bv"] == "dc-dynamic"
    assert cfg.train_config("dy_u_ct").model.kwargs["in_channels"] == 2
    if scale == "paper":
        assert s.data_grid().shape == (70, 70, 50) and s.data_grid().voxel_size_mm[0] == 4.0
        assert s.recon.iterations == 80 and cfg.pvc.iterations == 10 and s.n_samples == 28
        assert cfg.train_config("unet").data.batch_size == 6 and cfg.train_config("unet").model.kwargs["features"] == 32


def test_config_refuses_what_the_study_cannot_do():
    with pytest.raises(ConfigError, match="sim.recon"):
        resolve_config(cp.CardiacPvcConfig, YAML, overrides=["sim.recon.subsets=4"])
    with pytest.raises(ConfigError, match="target"):
        resolve_config(cp.CardiacPvcConfig, YAML, overrides=["methods.unet.target=reference"])
    with pytest.raises(ConfigError, match="mask_key"):
        resolve_config(cp.CardiacPvcConfig, YAML, overrides=["methods.dy_u.train.loss.mask_key=null"])


def test_paper_values_are_the_issues_tables():
    by = {(p.table, p.metric, p.method): p.value for p in cp.PAPER}
    assert len(by) == len(cp.PAPER)
    assert by[("table1", "imbv", "input")] == 0.209 and by[("table1", "imbv", "iy")] == 0.167
    assert by[("table1", "imbv", "dc_dy_u_bv")] == 0.169 and by[("table2", "imbv", "unet_ct")] == 0.177
    assert by[("statistics", "tukey_p", "dy_u_ct_bv")] == 0.986 and by[("statistics", "tukey_p", "dy_u_bv")] == 0.009
    # The paper's partial-volume bias: non-PVC / iY = 1.25.
    assert by[("table1", "imbv", "input")] / by[("table1", "imbv", "iy")] == pytest.approx(1.25, abs=0.005)
    # Rows of ours without a number of the paper: the truth's IMBV, and Table I's other metrics against iY.
    missing = {k for k, v in by.items() if np.isnan(v)}
    assert missing == {("table1", "imbv", "truth")} | {("table1", m, meth) for m in ("psnr", "ssim", "rmse")
                                                       for meth in cp.PAPER_FAMILY if meth != "iy"}
    assert all(p.where == {"against": "iy", "region": "heart_fov"} for p in cp.PAPER if p.metric != "imbv"
               and p.table == "table1")
    assert set(cp.PAPER_FAMILY) == {"input", "unet", "dy_u", "dy_u_ct", "dy_u_bv", "dy_u_ct_bv", "dc_dy_u_bv", "iy"}


def test_fov_mask_is_the_cylinder_and_heart_slices_hold_the_heart():
    grid = VoxelGrid((10, 10, 4), 10.0)
    m = cp._fov_mask(grid, 60.0)
    c = np.arange(10) - 4.5
    ref = (np.hypot(*np.meshgrid(c * 10, c * 10, indexing="ij")) <= 30.0)
    assert m.shape == (1, 10, 10, 4) and np.array_equal(m[0, :, :, 2].numpy(), ref)
    lab = torch.zeros(1, 10, 10, 4, dtype=torch.long)
    lab[0, 4, 4, 1] = cp.MYOCARDIUM
    lab[0, 5, 5, 2] = cp.LV_BLOOD
    cases = stages.CaseSet(["a"], {"a": {"labels": lab, "fov": m}})
    h = cp._heart_slices(cases)["a"]
    assert h[..., [0, 3]].sum() == 0 and torch.equal(h[..., 1], m[..., 1]) and torch.equal(h[..., 2], m[..., 2])


def test_imbv_rows_against_hand_computed_means():
    lab = torch.zeros(1, 4, 4, 2, dtype=torch.long)
    lab[0, :2] = cp.MYOCARDIUM
    lab[0, 2:] = cp.LV_BLOOD
    g = torch.Generator().manual_seed(0)
    img = {m: torch.rand(1, 4, 4, 2, generator=g) + 0.1 for m in ("input", "iy", "truth")}
    rows = cp._imbv_rows({m: {"a": v} for m, v in img.items()}, stages.CaseSet(["a"], {"a": {"labels": lab}}))
    val = {(r["method"], r["metric"]): r["value"] for r in rows}
    ref = {m: float(v[0, :2].double().mean() / v[0, 2:].double().mean()) for m, v in img.items()}
    assert val[("input", "imbv")] == pytest.approx(ref["input"], rel=1e-6)
    assert val[("input", "imbv_error_vs_iy")] == pytest.approx(abs(ref["input"] - ref["iy"]), rel=1e-6)
    assert val[("iy", "imbv_error_vs_truth")] == pytest.approx(abs(ref["iy"] - ref["truth"]), rel=1e-6)


def test_statistics_match_statsmodels_and_scipy():
    from scipy import stats as st
    from statsmodels.stats.anova import AnovaRM

    rng = np.random.default_rng(0)
    base = rng.uniform(0.1, 0.25, 8)
    values = {"iy": base, "input": base * 1.6 + rng.normal(0, 0.01, 8), "unet": base * 1.1 + rng.normal(0, 0.01, 8),
              "unet_bv": base * 1.05 + rng.normal(0, 0.01, 8), "truth": base * 0.9}
    # Eight volumes: the ED and ES gates of four subjects.
    ids = [f"{ph}{i:05d}" for i in range(4) for ph in ("ed", "es")]
    rows = [{"case": ids[i], "method": m, "metric": "imbv", "value": float(v[i])}
            for m, v in values.items() for i in range(8)]
    out = {(r["metric"], r["method"], r.get("versus")): r["value"] for r in cp._statistics(rows, list(values))}
    # Two families: the paper's methods (unet_bv is not one: Table II), and every method but the truth.
    families = {"": ("iy", "input", "unet"), "_all": ("iy", "input", "unet", "unet_bv")}
    assert ("tukey_p", "unet_bv", "iy") not in out and ("tukey_p_all", "unet_bv", "iy") in out
    subject_mean = {m: v.reshape(4, 2).mean(1) for m, v in values.items()}  # the repeated unit: a subject
    for suffix, fam in families.items():
        long = pd.DataFrame([{"subject": s, "method": m, "value": subject_mean[m][s]} for m in fam for s in range(4)])
        ref = AnovaRM(long, "value", "subject", within=["method"]).fit().anova_table
        assert out[(f"rm_anova_p{suffix}", "all", None)] == pytest.approx(float(ref["Pr > F"].iloc[0]), rel=1e-6)
        assert out[(f"rm_anova_f{suffix}", "all", None)] == pytest.approx(float(ref["F Value"].iloc[0]), rel=1e-6)
        # Tukey (repeated measures): q = |mean difference| / sqrt(MS_err / n), k means, (n-1)(k-1) df.
        k, n = len(fam), 4
        y = np.stack([subject_mean[m] for m in fam], 1)
        resid = y - y.mean(1, keepdims=True) - y.mean(0, keepdims=True) + y.mean()
        df_err = (n - 1) * (k - 1)
        ms = (resid**2).sum() / df_err
        q = abs(subject_mean["unet"].mean() - subject_mean["iy"].mean()) / np.sqrt(ms / n)
        assert out[(f"tukey_p{suffix}", "unet", "iy")] == pytest.approx(float(st.studentized_range.sf(q, k, df_err)),
                                                                       rel=1e-4)
    d = values["input"] - values["truth"]
    assert out[("ba_bias", "input", "truth")] == pytest.approx(d.mean())
    assert out[("ba_loa_high", "input", "truth")] == pytest.approx(d.mean() + 1.96 * d.std(ddof=1))
    fit = st.linregress(values["iy"], values["input"])
    assert out[("fit_slope", "input", "iy")] == pytest.approx(fit.slope)
    assert out[("fit_r2", "input", "iy")] == pytest.approx(fit.rvalue**2)


def _fov_sample():
    """A training sample as :func:`cardiac_pvc._datasets` builds it, on a 16×16×12 grid of 10 mm (the
    three-plane SSIM's 11-voxel window needs >= 11 along every axis)."""
    grid = VoxelGrid((16, 16, 12), 10.0)
    fov = cp._fov_mask(grid, 120.0)
    lab = torch.zeros(1, *grid.shape, dtype=torch.long)
    lab[0, 5:11, 5:11, 3:9] = cp.MYOCARDIUM
    lab[0, 7:9, 7:9, 3:9] = cp.LV_BLOOD
    g = torch.Generator().manual_seed(0)
    spect = torch.rand(1, *grid.shape, generator=g) + 0.5
    return {"input": (spect * fov).float(), "target": (spect * fov * 0.9).float(), "organ_labels": lab,
            cp.FOV_KEY: fov}


def test_the_fov_mask_rotates_with_the_volume_and_the_loss_ignores_what_lies_outside_it():
    from spectdl.data.transforms import Rotate
    from spectdl.losses import build_loss

    norm = {"inputs": ["mean"], "offsets": [0.0], "output": 0, "output_min": 0.0}
    sample = _fov_sample()
    transform = cp._sample_transform(norm, 30.0)
    # The first seed whose draw tilts the cylinder's axis (a rotation in xz or yz).
    for seed in range(200):
        out, spec = transform(sample, torch.Generator().manual_seed(seed))
        angles = spec["transforms"][0]["angles_deg"]
        if any(angles.get(p, 0.0) % 180.0 for p in ("xz", "yz")):
            break
    mask = out[cp.FOV_KEY]
    assert mask.dtype == torch.bool and not torch.equal(mask, sample[cp.FOV_KEY])
    assert torch.equal(mask, Rotate(angles).apply({"m": sample[cp.FOV_KEY]})["m"])
    # The input (the FOV-masked image, tri-linear) lies where the mask (nearest neighbour) does: the
    # nearest source voxel is one of the 8 that the interpolation weighs by >= 1/8.
    one = dict(sample, input=sample[cp.FOV_KEY].float())
    rotated = transform(one, torch.Generator().manual_seed(seed))[0]
    x = rotated["input"] / rotated["input"].max()
    assert float(x[mask].min()) >= 1 / 8 - 1e-6 and float(x[~mask].max()) <= 7 / 8 + 1e-6
    # The study's loss, with the rotated sample's context: only the voxels inside the rotated FOV count.
    cfg = resolve_config(cp.CardiacPvcConfig, YAML, scale="smoke")
    loss = build_loss(dict(cfg.train_config("dc_dy_u_bv").loss))
    ctx = {cp.FOV_KEY: mask[None], "masks": {k: v[None] for k, v in out["masks"].items()}}
    t = out["target"][None].double()
    p = (t * 1.1 + 0.05).requires_grad_(True)
    ref = loss(p, t, **ctx)
    ref.backward()
    wild = torch.where(mask[None], p.detach(), torch.full_like(t, 40.0))
    assert float(loss(wild, t, **ctx)) == pytest.approx(float(ref.detach()), rel=1e-12)
    assert float(p.grad[~mask[None]].abs().max()) == 0.0 and float(p.grad[mask[None]].abs().max()) > 0


def test_mlem_outside_fills_the_image_outside_the_fov_with_the_mlem_image():
    s = _fov_sample()
    spect = s["input"] + 3.0 * ~s[cp.FOV_KEY]
    cases = stages.CaseSet(["a"], {"a": {"spect": spect, "fov": s[cp.FOV_KEY]}})
    net = torch.full_like(spect, 7.0)
    out = cp._mlem_outside({"input": {"a": s["input"]}, "net": {"a": net}}, cases)
    fov = s[cp.FOV_KEY]
    assert torch.equal(out["input"]["a"], spect)  # the non-PVC image is the MLEM image itself
    assert torch.equal(out["net"]["a"][fov], net[fov]) and torch.equal(out["net"]["a"][~fov], spect[~fov])


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    from spectdl.report.study import build_study_report
    from spectdl.studies import run_study

    return run_study("cardiac-pvc", scale="smoke", out=tmp_path_factory.mktemp("cpvc"),
                     reporter=build_study_report).run_dir


@pytest.mark.slow
def test_smoke_run_writes_every_method_and_metric(smoke_run):
    df = pd.read_csv(smoke_run / "metrics.csv", dtype={"case": str})
    assert METHODS <= set(df.method)
    assert {"iy_shift1", "iy_dilate1"} <= set(df.method)
    assert {"imbv", "imbv_error_vs_iy", "imbv_error_vs_truth", "psnr", "ssim", "rmse", "deviance",
            "deviance_change_percent", "rm_anova_p", "tukey_p", "rm_anova_p_all", "tukey_p_all"} <= set(df.metric)
    dev = df[df.metric == "deviance"]
    assert set(dev.region) == {"fov", "fov_mlem_outside"}
    # With the MLEM image outside the field, the non-PVC image is the MLEM image: its change is 0.
    change = df[(df.metric == "deviance_change_percent") & (df.method == "input")]
    assert np.allclose(change.value, 0.0)
    cases = set(df[df.case != "all"].case)
    assert cases == {c for c in cases if c[:2] in ("ed", "es")} and len(cases) == 2
    imbv = df[(df.metric == "imbv")]
    assert set(imbv.method) >= METHODS and imbv.value.between(0.0, 5.0).all()
    paper = pd.read_csv(smoke_run / "paper.csv")
    t1 = paper[(paper.table == "table1") & (paper.metric == "imbv")].set_index("method")
    assert t1.loc["iy"].our_value == pytest.approx(imbv[imbv.method == "iy"].value.mean())
    assert np.isnan(t1.loc["truth"].paper_value)
    assert t1.loc["truth"].our_value == pytest.approx(imbv[imbv.method == "truth"].value.mean())
    psnr = paper[(paper.table == "table1") & (paper.metric == "psnr")].set_index("method")
    sel = df[(df.metric == "psnr") & (df.against == "iy") & (df.region == "heart_fov") & (df.method == "dc_dy_u_bv")]
    assert np.isnan(psnr.loc["dc_dy_u_bv"].paper_value)
    assert psnr.loc["dc_dy_u_bv"].our_value == pytest.approx(sel.value.mean())
    summary = json.loads((smoke_run / "summary.json").read_text())
    assert any("Non-PVC / truth" in n for n in summary["notes"])
    assert (smoke_run / "report.html").is_file()
    assert {s["x"] for s in summary["linear_fits"]} == {"iy", "truth"}


@pytest.mark.slow
def test_smoke_truth_imbv_is_the_phantoms(smoke_run):
    """The truth's IMBV in metrics.csv equals the phantom's drawn IMBV (the rbc preset: myocardium =
    IMBV × blood) recorded in the simulation manifest."""
    from spectdl.data.simulation import load_manifest_json

    df = pd.read_csv(smoke_run / "metrics.csv", dtype={"case": str})
    truth = df[(df.metric == "imbv") & (df.method == "truth")].set_index("case").value
    for phase in ("ed", "es"):
        m = load_manifest_json(smoke_run / "simulate" / phase / "manifest.json")
        for case, v in truth.items():
            if case.startswith(phase):
                rec = m["samples"][int(case[2:])]
                assert v == pytest.approx(float(np.ravel(rec["params"]["imbv"])[0]), rel=1e-4)
