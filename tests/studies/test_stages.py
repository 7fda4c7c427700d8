"""Study stages that need no simulation: inputs of a sinogram network, Table-1 case choice, region
statistics and the fixed OSEM iteration."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spectdl.errors import InputError
from spectdl.studies import baselines, stages


def _cases(n_views=120, n=128):
    g = torch.Generator().manual_seed(0)
    vols = {f"c{i}": {"noisy": torch.rand(1, n_views, n, generator=g), "mu": torch.rand(1, n, n, generator=g)}
            for i in range(2)}
    return stages.CaseSet(list(vols), vols)


def test_sinogram_inputs_wrap_exactly_the_first_eight_views():
    cases = stages.sinogram_inputs(_cases(), {"noisy": "noisy"}, rows=128)
    for c in cases.ids:
        x = cases.get(c, "input_noisy")
        sino, mu = cases.get(c, "noisy")[0], cases.get(c, "mu")[0]
        assert x.shape == (2, 128, 128, 1)
        torch.testing.assert_close(x[0, :120, :, 0], sino)
        torch.testing.assert_close(x[0, 120:, :, 0], sino[:8])  # views 0..7 again, after view 119
        torch.testing.assert_close(x[1, :, :, 0], mu)
    with pytest.raises(InputError, match="differ"):
        stages.sinogram_inputs(_cases(n=64), {"noisy": "noisy"}, rows=128)


def test_closest_cases_picks_the_nearest_value_per_target():
    values = {"a": 3.9, "b": 5.2, "c": 6.6, "d": 8.7}
    assert stages.closest_cases(values, (4, 5, 6, 7, 9)) == {4: "a", 5: "b", 6: "c", 7: "c", 9: "d"}
    with pytest.raises(InputError):
        stages.closest_cases({}, (4,))


def test_region_stats_rows_match_numpy():
    img = torch.arange(16.0).reshape(4, 4)
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[1:3, 1:3] = True
    rows = stages.region_stats_rows({"m": {"c": img}}, {"high": {"c": mask}}, dataset="d")
    got = {r["metric"]: r["value"] for r in rows}
    ref = img.numpy()[mask.numpy()]
    assert got["region_mean"] == pytest.approx(np.mean(ref))
    assert got["region_sd"] == pytest.approx(np.std(ref))
    assert all(r["region"] == "high" and r["dataset"] == "d" for r in rows)


def test_best_fixed_iteration_is_the_minimum_of_the_mean_curve():
    mse = {"a": [3.0, 2.0, 1.5, 1.7], "b": [4.0, 1.0, 1.4, 1.2]}
    k, curve = baselines.best_fixed_iteration(mse)
    assert curve == pytest.approx([3.5, 1.5, 1.45, 1.45])
    assert k == 3  # the first of the tied minima
    with pytest.raises(InputError):
        baselines.best_fixed_iteration({})


def _consistency_rows():
    """Two cases per (level, method): image MSE, high-uptake MAE and deviance, each the same in both cases."""
    table = {  # level: {method: (mse, high-uptake mae, deviance)}
        "noisy": {"truth": (0.0, 0.0, 0.10), "osem": (1.0, 1.0, 0.12),
                  "sharp": (0.9, 1.5, 1.0),      # looks as good as OSEM, does not explain the data: flagged
                  "blurry": (3.0, 3.0, 1.0),     # deviance as high, but its images already look worse
                  "fits": (0.8, 0.8, 0.2),       # under 2 × 0.12
                  "mae_only": (2.0, 1.05, 1.0),  # MSE worse, high-uptake MAE within 10 %: looks good
                  "empty": (1.0, 1.0, float("inf"))},
        "noise_free": {"truth": (0.0, 0.0, 0.0), "osem": (0.5, 0.5, 0.001),
                       "sharp": (0.4, 0.4, 0.5),   # above 2 × the noisy phantom's 0.10
                       "fits": (0.4, 0.4, 0.05)},  # above 2 × OSEM's 0.001, under the counting-noise floor
    }
    rows = []
    for lv, methods in table.items():
        for m, values in methods.items():
            for c in ("a", "b"):
                for (metric, region), v in zip((("mse", "image"), ("uptake_mae", "high"), ("deviance", None)), values):
                    if m == "truth" and metric != "deviance":
                        continue
                    rows.append({"case": c, "method": m, "metric": metric, "value": v, "dataset": "d", "level": lv,
                                 **({"region": region} if region else {"data": "measured"})})
    # Set-level rows never enter the means.
    rows.append({"case": "all", "method": "fits", "metric": "deviance", "value": 99.0, "dataset": "d",
                 "level": "noisy"})
    return rows


def test_consistency_checks_flag_good_looking_images_that_do_not_explain_the_data():
    checks = stages.consistency_checks(_consistency_rows(), phantom="truth", baseline="osem", tolerance=1.1,
                                       factor=2.0, noise_level="noisy")
    by = {(c["level"], c["method"]): c for c in checks}
    assert {k for k, c in by.items() if c["flagged"]} == {("noisy", "sharp"), ("noisy", "mae_only"),
                                                          ("noisy", "empty"), ("noise_free", "sharp")}
    assert not by[("noisy", "blurry")]["looks_good"] and by[("noisy", "mae_only")]["looks_good"]
    assert by[("noisy", "sharp")]["reference_deviance"] == pytest.approx(0.12)
    assert by[("noisy", "fits")]["deviance"] == pytest.approx(0.2)
    assert by[("noisy", "mae_only")]["error_ratio"] == pytest.approx({"mse_image": 2.0, "uptake_mae_high": 1.05})
    # On noise-free data the reference is the counting-noise floor, not OSEM's near-zero deviance.
    assert by[("noise_free", "fits")]["reference_deviance"] == pytest.approx(0.10)
    assert ("noise_free", "truth") not in by and ("noise_free", "osem") not in by
    # Without the floor, an image closer to the data than counting noise would be flagged.
    bare = stages.consistency_checks(_consistency_rows(), factor=2.0)
    assert next(c for c in bare if c["level"] == "noise_free" and c["method"] == "fits")["flagged"]
    # metrics.csv keeps the infinite deviance of an empty image as an empty value: the same answer.
    saved = [{**r, "value": float("nan")} if r["value"] == float("inf") else r for r in _consistency_rows()]
    assert stages.consistency_checks(saved, noise_level="noisy") == checks
    assert stages.consistency_checks([]) == []


def test_projection_stage_rows_against_direct_formulas():
    """count_rows, pearson_rows and projection_deviance_rows: per-case values equal numpy/scipy's."""
    from scipy import stats as sps

    g = torch.Generator().manual_seed(0)
    full = {"a": torch.poisson(torch.full((1, 4, 8, 8), 30.0), generator=g)}
    low = {"a": torch.poisson(full["a"] * 0.5, generator=g)}
    pred = {"a": full["a"] * 1.1}
    rows = stages.count_rows({"pix2pix": pred}, full, level=0.5)
    assert rows[0]["value"] == pytest.approx(10.0, rel=1e-5) and rows[0]["level"] == 0.5
    r = stages.pearson_rows({"m": low}, full)[0]["value"]
    assert r == pytest.approx(sps.pearsonr(low["a"].double().flatten().numpy(), full["a"].double().flatten().numpy())[0], abs=1e-9)
    d = stages.projection_deviance_rows(pred, low, 0.5, method="pix2pix")[0]["value"]
    y, mu = low["a"].double().numpy(), 0.5 * pred["a"].double().numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(y > 0, y * np.log(y / mu), 0.0) - (y - mu)
    assert d == pytest.approx(2 * terms.sum() / y.sum(), rel=1e-9)


def test_osem_images_equal_osem_then_butterworth(tmp_path):
    """osem_images of a projection set is recon.osem then recon.butterworth_filter, clamped at 0."""
    from spectdl.data import simulate
    from spectdl.data.simulation import simulation_projector
    from spectdl.recon import butterworth_filter, osem

    cfg = dict(phantom="cardiac", grid={"shape": [24, 24, 24], "voxel_size_mm": 16.0}, n_samples=1, batch_size=1,
               shard_size=1, orbit={"n_angles": 8, "radius_mm": 250.0, "arc_deg": 180.0, "start_deg": 45.0},
               counts={"total": 1e5}, store=["activity", "mu_per_cm", "labels", "counts"], splits={"test": 1.0})
    run = simulate(cfg, tmp_path / "sim", workers=1, progress=False)
    cases = stages.simulated_cases(run.manifest_path, "test", {"full": "counts_full", "mu": "mu_per_cm"})
    out = stages.osem_images(tmp_path / "rec", run.manifest_path, cases, {"ref/x": cases.by_case("full")},
                             iterations=2, subsets=2, butterworth_order=10, butterworth_cutoff=0.45)
    got = stages.load_volumes(out["ref/x"])[cases.ids[0]]
    c = cases.ids[0]
    proj = simulation_projector(run.manifest_path, cases.get(c, "mu")[None].float())
    want = butterworth_filter(osem(cases.get(c, "full")[None].float(), proj, 2, 2), 0.45, 10, spatial_dims=3).clamp_min(0)
    assert torch.allclose(got, want[0], rtol=1e-5, atol=1e-6) and (tmp_path / "rec" / "ref_x.npz").is_file()


def test_liver_crop_and_label_dilation():
    """The liver crop: with only the liver active every projected pixel is liver-dominated, with a liver
    of no uptake none is; a label dilated by one voxel contains the label and its 6-neighbours."""
    from spectdl.geometry import Orbit, VoxelGrid
    from spectdl.phantoms import cardiac
    from spectdl.physics import SpectProjector

    grid = VoxelGrid((24, 24, 24), 16.0)
    ph = cardiac(grid, seed=1)
    proj = SpectProjector(grid, Orbit.circular(6, 250.0, 180.0, 45.0), None)
    liver = ph.labels == ph.label_names["liver"]
    only = type(ph)(ph.activity * liver, ph.mu_per_cm, grid, ph.labels, ph.label_names, ph.info)
    crop = stages.liver_dominated(only, proj, 0.5)
    assert torch.equal(crop, proj.A(only.activity)[0] > 0)
    none = type(ph)(ph.activity * ~liver, ph.mu_per_cm, grid, ph.labels, ph.label_names, ph.info)
    assert not bool(stages.liver_dominated(none, proj, 0.5).any())
    some = stages.liver_dominated(ph, proj, 0.5)
    assert 0 < int(some.sum()) < int(crop.sum())
    grown = stages.dilate_label(ph, "liver", 1)[0]
    assert bool(grown[liver[0, 0]].all()) and int(grown.sum()) > int(liver.sum())
    shifted = torch.roll(liver[0, 0], 1, 0) | torch.roll(liver[0, 0], -1, 2)
    assert bool(grown[shifted].all())


def _blurred_cardiac(seed, **kwargs):
    from scipy import ndimage

    from spectdl.geometry import VoxelGrid
    from spectdl.phantoms.cardiac import cardiac

    ph = cardiac(VoxelGrid((64, 64, 64), 6.4), 1, seed=seed, **kwargs)
    img = ndimage.gaussian_filter(ph.activity[0, 0].double().numpy(), 10.0 / 2.355 / 6.4)
    return ph, torch.as_tensor(img)[None]


def test_perfusion_rows_score_defects_and_agreement_against_full_dose():
    normals = {f"n{i}": _blurred_cardiac(200 + i)[1] for i in range(4)}
    cases = {f"c{i}": _blurred_cardiac(300 + i, risk_groups=("healthy", "intermediate", "high")) for i in range(5)}
    phantoms = {c: ph for c, (ph, _) in cases.items()}
    ref = {c: img for c, (_, img) in cases.items()}
    images = {"reference": ref, "copy/half": {c: 2.0 * v for c, v in ref.items()}}  # same map: counts double
    rows, analysis = stages.perfusion_rows(images, normals, phantoms, voxel_size_mm=6.4, levels={"half": 0.5})
    assert analysis["failed"] == [] and analysis["n_normals"] == 4
    get = {(r["case"], r["method"], r["metric"]): r["value"] for r in rows}
    for c, ph in phantoms.items():
        healthy = ph.info["risk_group"][0] == "healthy"
        if healthy:
            assert get[(c, "reference", "sss")] == 0
        else:
            assert get[(c, "reference", "sss")] > 0
        assert get[(c, "copy", "sss")] == get[(c, "reference", "sss")]  # normalised maps: the scale cancels
        # Large two-territory defects leave less wall to fit the axis to (c3: 18° on these phantoms).
        assert get[(c, "copy", "tpd_abs_error")] == 0 and get[(c, "reference", "axis_error_deg")] < (3 if healthy else 25)
        assert get[(c, "reference", "cavity_volume_ml")] > 0
    assert get[("all", "copy", "sss_category_unchanged_percent")] == 100.0
    # Sensitivity and specificity per territory, recomputed from the per-case rows and the truth.
    for t, name in enumerate(("lad", "lcx", "rca")):
        called = {c: get[(c, "reference", f"sss_{name}")] >= 2 for c in phantoms}
        truth = {c: bool(ph.info["territory_defect"][0, t]) for c, ph in phantoms.items()}
        pos = [c for c in phantoms if truth[c]]
        neg = [c for c in phantoms if not truth[c]]
        if pos:
            assert get[("all", "reference", f"sensitivity_{name}")] == sum(called[c] for c in pos) / len(pos)
        if neg:
            assert get[("all", "reference", f"specificity_{name}")] == sum(not called[c] for c in neg) / len(neg)


def test_count_level_rows_follow_the_thinning_theory():
    vols = {"a": {"full": torch.full((1, 4, 8, 8), 30.0)}, "b": {"full": torch.full((1, 4, 8, 8), 40.0)}}
    rows = stages.count_level_rows(stages.CaseSet(["a", "b"], vols), "full", {0.5: 5.69, 0.25: 10.10})
    by = {(r["method"], r.get("level")): r["value"] for r in rows}
    assert by[("reference", None)] == pytest.approx(35.0)
    assert by[("paper", 0.5)] == pytest.approx(5.69**2) and by[("paper", 0.25)] == pytest.approx(10.10**2 / 3)


def test_gate_sets_regroup_by_kind():
    v = {f"c1/{g}/{k}": torch.full((1,), float(g)) for g in range(2) for k in ("reference", "input")}
    out = stages.gate_sets(v)
    assert sorted(out) == ["input", "reference"] and sorted(out["input"]) == ["c1_g0", "c1_g1"]
    assert float(out["reference"]["c1_g1"]) == 1.0


def test_case_max_rows_scale_each_cases_maximum():
    rows = stages.case_max_rows({"a": torch.tensor([1.0, 7.0]), "b": torch.tensor([3.0])}, metric="output_scale_counts",
                                method="pix2pix", factor=1.25, level=0.5)
    assert [(r["case"], r["value"], r["level"]) for r in rows] == [("a", 8.75, 0.5), ("b", 3.75, 0.5)]


def test_scan_midpoints_follow_the_scan_order():
    # 9-min 1x scan after a 3-min 3x and a 4.5-min 2x: mid-scan times 1.5, 5.25 and 12 min.
    assert stages.scan_midpoints(9.0) == pytest.approx({3.0: 1.5 - 12.0, 2.0: 5.25 - 12.0})
    with pytest.raises(InputError):
        stages.scan_midpoints(0.0)


def test_real_like_scans_are_bounded_recorded_and_reproducible(tmp_path):
    from spectdl.noise.scans import ScanKinetics

    labels = torch.ones(1, 40, 30, dtype=torch.long)
    labels[:, 30:36, 12:18] = 4  # a bladder
    vols = {f"c{i}": {"expected": torch.full((2, 40, 30), 80.0), "labels": labels} for i in range(2)}
    cases = stages.CaseSet(["c0", "c1"], vols)
    names = {"outside": 0, "soft_tissue": 1, "bladder": 4}
    minutes = stages.scan_midpoints(9.0)
    still = stages.real_like_scans(tmp_path / "a", cases, names, 2.26, minutes=minutes, seed=3, max_shift_mm=0,
                                   max_rotation_deg=0, max_nonrigid_mm=0)
    scans = stages.load_volumes(still["scans"])
    k = ScanKinetics()
    for key, scan in scans.items():
        case, v = key.split("/")
        t = minutes[float(v)]
        soft = scan[:, :30]
        lam = 80.0 / float(v) * k.factor("soft_tissue", t)
        assert torch.equal(scan, scan.round()) and abs(float(soft.mean()) - lam) < 5 * (lam / soft.numel()) ** 0.5
    moved = stages.real_like_scans(tmp_path / "b", cases, names, 2.26, minutes=minutes, seed=3)
    again = stages.real_like_scans(tmp_path / "c", cases, names, 2.26, minutes=minutes, seed=3)
    assert moved["motion"] == again["motion"]
    for key, rec in moved["motion"].items():
        assert 0 < rec["max_displacement_mm"] <= 2 ** 0.5 * 5 + 0.0175 * 60 + 6 and rec["minutes"] < 0
    a, b = stages.load_volumes(moved["scans"]), stages.load_volumes(again["scans"])
    assert all(torch.equal(a[k], b[k]) for k in a)
