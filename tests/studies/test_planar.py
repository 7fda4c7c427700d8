"""The planar whole-body stage functions against direct computations (scipy, scikit-learn, statsmodels)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from spectdl.data import ManifestDataset
from spectdl.studies import planar
from spectdl.studies.stages import CaseSet


def test_side_by_side_puts_the_views_next_to_each_other():
    v = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(1, 2, 3, 4)
    out = planar.side_by_side(v)
    assert out.shape == (3, 8)
    assert torch.equal(out[:, :4], v[0, 0]) and torch.equal(out[:, 4:], v[0, 1])


def _pair_cases():
    gen = torch.Generator().manual_seed(0)
    labels = torch.ones(1, 40, 20, dtype=torch.int64)
    labels[0, 30:34, 8:12] = 4  # the bladder
    full = torch.poisson(torch.full((1, 2, 40, 20), 30.0), generator=gen)
    full[:, :, 30:34, 8:12] += 400.0
    cases = CaseSet(["w0"], {"w0": {"full": full, "labels": labels}})
    # A fast scan with a third of the body's counts and a bladder that has filled a lot more.
    fast = torch.poisson(full[0] / 3.0, generator=gen)
    fast[:, 30:34, 8:12] *= 3.0
    return cases, {"w0/3": fast}


def test_real_pairs_are_count_normalised_outside_the_bladder_and_read_back_by_the_manifest(tmp_path):
    cases, scans = _pair_cases()
    out = planar.real_pair_manifests(tmp_path, {"train": cases}, {"train": scans}, [3.0], bladder_label=4,
                                     margin_px=2, dilate_px=1)
    ds = ManifestDataset(out["manifests"]["3"], "train", columns=("organ_labels",))
    assert len(ds) == 2  # one case per view
    for i, view in enumerate(("ant", "post")):
        s = ds[i]
        assert s["case_id"] == f"w0_{view}"
        bladder = s["organ_labels"][0].bool()
        # The bladder found by thresholding covers the hot block (grown by the dilation).
        assert bladder[30:34, 8:12].all() and bladder.sum() <= 6 * 6
        x, ref = s["input"][0].double(), s["target"][0].double()
        assert float(x[~bladder].sum()) == pytest.approx(float(ref[~bladder].sum()), rel=1e-6)
        scale = out["scales"][f"w0/{view}/3"]
        raw = scans["w0/3"][i].double()
        assert torch.allclose(x, raw * scale, rtol=1e-6)
        # Counting the filled bladder would have scaled the fast scan by less: leaving it out matters.
        assert float(ref.sum() / raw.sum()) < 0.9 * scale


def test_hottest_lesion_and_its_counts():
    ref = torch.zeros(20, 20)
    ref[3:5, 3:5] = 10.0
    ref[12:15, 12:15] = 50.0
    ref[13, 13] = 80.0
    mask = (ref > 0).float()
    hot = planar.hottest_lesions({"a": ref}, {"a": mask}, dilate_px=1)["a"]
    assert hot[13, 13] and not hot[4, 4] and hot[11, 12] and not hot[10, 12]
    img = ref.clone()
    img[11, 13] = 95.0  # inside the dilated lesion: counts as the lesion's maximum
    img[4, 4] = 200.0  # another lesion: not the hottest one
    rows = planar.lesion_count_rows({"m": {"a": img}}, {"a": ref}, {"a": hot}, speed=2.0)
    got = {(r["method"], r["metric"]): r["value"] for r in rows}
    assert got[("reference", "max_lesion_count")] == 80.0
    assert got[("m", "max_lesion_count")] == 95.0 and got[("m", "max_lesion_count_abs_error")] == 15.0
    assert all(r["speed"] == 2.0 for r in rows)


def test_agreement_rows_equal_scipy_pearson_and_the_bland_altman_formulas():
    rng = np.random.default_rng(1)
    ref = rng.uniform(50, 200, 12)
    meth = ref * 1.1 + rng.normal(0, 5, 12)
    rows = [{"case": f"c{i}", "method": "reference", "metric": "max_lesion_count", "value": r, "speed": 2.0}
            for i, r in enumerate(ref)]
    rows += [{"case": f"c{i}", "method": "m", "metric": "max_lesion_count", "value": v, "speed": 2.0}
             for i, v in enumerate(meth)]
    rows += [{"case": "c0", "method": "m", "metric": "max_lesion_count", "value": 1e9, "speed": 3.0}]  # other speed
    out = {r["metric"]: r for r in planar.agreement_rows(rows, "max_lesion_count", ["m"], reference="reference",
                                                          name="count", speed=2.0)}
    assert out["count_pearson"]["value"] == pytest.approx(stats.pearsonr(meth, ref).statistic, rel=1e-12)
    d = meth - ref
    assert out["count_ba_bias"]["value"] == pytest.approx(d.mean(), rel=1e-12)
    assert out["count_ba_loa_high"]["value"] == pytest.approx(d.mean() + 1.96 * d.std(ddof=1), rel=1e-12)
    assert out["count_ba_loa_low"]["value"] == pytest.approx(d.mean() - 1.96 * d.std(ddof=1), rel=1e-12)
    assert all(r["case"] == "all" and r["n"] == 12 for r in out.values())


def test_candidate_sites_are_lesion_centres_or_the_hottest_bone_spots():
    ref = torch.zeros(40, 30)
    lesion = torch.zeros(40, 30)
    lesion[10:13, 5:8] = 1  # centre (11, 6)
    lesion[30:32, 20:22] = 1  # centre (30.5, 20.5) -> rounded
    labels = torch.full((40, 30), 2)
    # Centres of mass (11, 6) and (30.5, 20.5); Python rounds halves to even: (30, 20).
    assert sorted(planar.candidate_sites(ref, lesion, labels, bone_label=2, n_sites=3, min_distance_px=3)) == \
        [(11, 6), (30, 20)]
    ref[5, 5] = 100.0
    ref[25, 20] = 60.0
    ref[35, 3] = 500.0  # hottest, but not bone
    labels[30:, :10] = 1
    sites = planar.candidate_sites(ref, torch.zeros(40, 30), labels, bone_label=2, n_sites=2, min_distance_px=3)
    assert sites == [(5, 5), (25, 20)]


def _blob(n, amplitude, gen, size=9):
    r2 = (torch.arange(size) - size // 2).double() ** 2
    g = torch.exp(-(r2[:, None] + r2[None, :]) / 4.0)
    return torch.poisson(20.0 + amplitude * g.expand(n, size, size), generator=gen)


def test_observer_diagnosis_matches_the_direct_accuracy_and_auc_of_its_own_scores():
    from sklearn.metrics import roc_auc_score

    gen = torch.Generator().manual_seed(2)
    train = {"patches_present": _blob(60, 40.0, gen), "patches_absent": _blob(60, 10.0, gen)}
    train["case_patches"] = {f"t{i}": _blob(2, 40.0 if i % 2 else 10.0, gen) for i in range(20)}
    train["truth"] = {f"t{i}": bool(i % 2) for i in range(20)}
    truth = {f"c{i}": bool(i % 2) for i in range(16)}
    test = {"good": {c: _blob(2, 40.0 if t else 10.0, gen) for c, t in truth.items()},
            "blurred": {c: _blob(2, 18.0 if t else 12.0, gen) for c, t in truth.items()}}
    rows, info = planar.observer_diagnosis(planar.fit_observer(train, patch=9, n_channels=3), test, truth, speed=2.0)
    got = {(r["method"], r["metric"]): r["value"] for r in rows if r["case"] == "all"}
    for method in test:
        score = {r["case"]: r["value"] for r in rows if r["method"] == method and r["metric"] == "cho_score"}
        called = {r["case"]: r["value"] for r in rows if r["method"] == method and r["metric"] == "malignant_called"}
        assert all(called[c] == float(score[c] >= info["threshold"]) for c in truth)
        y = np.array([truth[c] for c in truth])
        d = np.array([called[c] for c in truth]).astype(bool)
        assert got[(method, "accuracy")] == pytest.approx(100 * np.mean(y == d))
        assert got[(method, "sensitivity")] == pytest.approx(100 * d[y].mean())
        assert got[(method, "specificity")] == pytest.approx(100 * (~d[~y]).mean())
        assert got[(method, "auc")] == pytest.approx(roc_auc_score(y, [score[c] for c in truth]), abs=1e-12)
    assert got[("good", "auc")] > 0.95 and got[("good", "auc")] > got[("blurred", "auc")]
    assert len(info["curves"]["good"]["fpr"]) == len(info["curves"]["good"]["tpr"])


def test_mcnemar_rows_equal_statsmodels_on_the_correctness_table():
    from statsmodels.stats.contingency_tables import mcnemar

    rng = np.random.default_rng(3)
    truth = {f"c{i}": bool(rng.random() < 0.5) for i in range(40)}
    a = {c: t if rng.random() < 0.9 else not t for c, t in truth.items()}
    b = {c: t if rng.random() < 0.6 else not t for c, t in truth.items()}
    rows = [{"case": c, "method": m, "metric": "malignant_called", "value": float(v[c]), "speed": 3.0}
            for m, v in (("a", a), ("b", b)) for c in truth]
    out = planar.mcnemar_rows(rows, [("a", "b")], truth, speed=3.0)[0]
    ca = np.array([a[c] == truth[c] for c in truth])
    cb = np.array([b[c] == truth[c] for c in truth])
    table = [[np.sum(ca & cb), np.sum(ca & ~cb)], [np.sum(~ca & cb), np.sum(~ca & ~cb)]]
    n_disc = table[0][1] + table[1][0]
    expect = mcnemar(table, exact=n_disc < 25, correction=True).pvalue
    assert out["value"] == pytest.approx(expect, rel=1e-9)
    assert out["method"] == "a" and out["versus"] == "b" and out["n"] == 40


class _MeanStd(torch.nn.Module):
    def forward(self, x):
        f = x[:, 0].reshape(x.shape[0], -1)
        return torch.stack([f.mean(1), f.std(1)], 1)


def test_perceptual_rows_clip_to_the_reference_window_and_equal_the_metric_functions():
    from spectdl.metrics.backbones import PlanarFeatures
    from spectdl.metrics.functional import lpips, patch_fid
    from spectdl.metrics.functional.lpips import LPIPSNetwork

    gen = torch.Generator().manual_seed(4)
    ref = torch.poisson(torch.full((64, 32), 20.0), generator=gen)
    ref[10, 10] = 500.0  # a hot spot above the window
    img = torch.poisson(torch.full((64, 32), 20.0), generator=gen)
    body = torch.ones(64, 32, dtype=torch.bool)
    net = LPIPSNetwork("planar", backbone=PlanarFeatures((4, 8), generator=torch.Generator().manual_seed(0)))
    rows = planar.perceptual_rows({"m": {"a": img}, "same": {"a": ref}}, {"a": ref}, {"a": body}, lpips_network=net,
                                  fid_extractor=_MeanStd(), percentile=99.0, patch=16, stride=16, speed=2.0)
    got = {(r["method"], r["metric"]): r["value"] for r in rows}
    L = float(torch.quantile(ref.double().reshape(-1), 0.99))
    a, b = img.clamp(0, L), ref.clamp(0, L)
    assert got[("m", "lpips")] == pytest.approx(float(lpips(a[None, None], b[None, None], L, network=net)), rel=1e-5)
    assert got[("m", "fid")] == pytest.approx(float(patch_fid(a.double(), b.double(), L, feature_extractor=_MeanStd(),
                                                              patch=16, stride=16)), rel=1e-6)
    assert got[("same", "lpips")] == pytest.approx(0.0, abs=1e-7) and got[("same", "fid")] == pytest.approx(0, abs=1e-9)
    assert got[("same", "fid_set")] == pytest.approx(0.0, abs=1e-9) and got[("m", "fid_set")] > 0


@pytest.mark.shared
def test_the_real_scan_is_read_head_to_feet_and_binned_with_its_counts():
    from pathlib import Path

    path = Path(__file__).resolve().parents[2].parent / "shared/data/real/bone_wholebody/NM1_wholebody_bone.dcm"
    if not path.is_file():
        pytest.skip(f"{path} is absent (../shared/data not on this machine)")
    img, k, _ = planar._real_view(str(path), 4.52)
    assert k == 2 and img.shape == (512, 128)
    full, _, _ = planar._real_view(str(path), 2.26)
    assert full.shape == (1024, 256) and float(full.sum()) == pytest.approx(3.6e6, rel=0.01)  # README: about 3.6 M
    assert float(img.sum()) == float(full.sum())  # binning keeps every count
    with pytest.raises(Exception, match="not a whole multiple"):
        planar._real_view(str(path), 3.0)
