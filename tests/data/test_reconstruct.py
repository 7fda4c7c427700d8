"""Independent shorter acquisitions, CT in HU, calibrated OSEM and reconstruct_simulation; the
training-side normalisation equals the inference side; repeats draw fresh augmentations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spectdl.data import SimulatedDataset, read_sample, simulate
from spectdl.data.normalization import Normalization
from spectdl.data.simulation import reconstruct_simulation, regenerate, sample_phantom
from spectdl.data.transforms import CentreCrop, MaskFromLabels, NormalizeChannels, replay
from spectdl.errors import InputError

SIM = {
    "phantom": "nema_iec",
    "phantom_kwargs": {"ratio": 6.0},
    "grid": {"shape": [40, 40, 24], "voxel_size_mm": 10.0},
    "n_samples": 4, "batch_size": 2, "shard_size": 4,
    "orbit": {"n_angles": 16, "radius_mm": 250.0},
    "counts": {"total": 4.0e5, "levels": {"full": 1.0, "fast": 0.15, "seventh": 0.142857}, "independent": ["fast"]},
    "store": ["activity", "mu_per_cm", "ct_hu", "labels", "counts", "expected"],
    "splits": {"train": 0.5, "test": 0.5},
    "compression": "none",
}


@pytest.fixture(scope="module")
def sims(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim")
    a = simulate(SIM, root / "counts", workers=1, progress=False)
    b = reconstruct_simulation(a.manifest_path, root / "recon", {"iterations": 3, "subsets": 4, "calibrate": True},
                               workers=1, progress=False)
    direct = simulate({**SIM, "recon": {"iterations": 3, "subsets": 4, "calibrate": True}}, root / "direct",
                      workers=1, progress=False)
    return a, b, direct


def test_independent_level_is_a_separate_poisson_scan_and_thinning_a_subset(sims):
    a, _, _ = sims
    s = read_sample(a.manifest_path, 0)
    full, fast, seventh, ybar = (s[k].double() for k in ("counts_full", "counts_fast", "counts_seventh", "expected"))
    assert bool((seventh <= full).all())            # binomial thinning never exceeds the scan it thins
    assert bool((fast > full).any())                 # an independent scan can
    # Its mean is f·ȳ (Poisson: mean = variance = f·ȳ), checked over all bins.
    assert float(fast.sum()) == pytest.approx(0.15 * float(ybar.sum()), rel=0.02)
    z = (fast - 0.15 * ybar)[ybar > 20] / (0.15 * ybar[ybar > 20]).sqrt()
    assert float(z.var()) == pytest.approx(1.0, abs=0.1)
    # Independent given ȳ: the residuals of the two scans are uncorrelated; thinning's are correlated (√f).
    m = ybar > 20
    r_full = (full - ybar)[m]
    corr_fast = float(torch.corrcoef(torch.stack([r_full, (fast - 0.15 * ybar)[m]]))[0, 1])
    corr_thin = float(torch.corrcoef(torch.stack([r_full, (seventh - 0.142857 * ybar)[m]]))[0, 1])
    assert abs(corr_fast) < 0.05 and corr_thin == pytest.approx(np.sqrt(0.142857), abs=0.05)


def test_ct_hu_is_stored_from_the_phantom(sims):
    a, _, _ = sims
    s = read_sample(a.manifest_path, 1)
    ph = sample_phantom(a.manifest_path, 1)
    assert torch.equal(s["ct_hu"], ph.ct_hu[0].to(s["ct_hu"].dtype))
    water = ph.labels[0] == ph.label_names["background"]
    # Water is 0 HU (voxels at the phantom's wall hold a partial volume of air or lung)
    assert float(s["ct_hu"][water].median()) == pytest.approx(0.0, abs=1.0)
    assert float((s["ct_hu"][water].abs() < 1).float().mean()) > 0.8
    assert float(s["ct_hu"][ph.labels[0] == 0].median()) == pytest.approx(-1000.0)


def test_reconstruct_simulation_equals_simulate_with_recon(sims):
    _, b, direct = sims
    for i in range(4):
        x, y = read_sample(b.manifest_path, i), read_sample(direct.manifest_path, i)
        assert set(x) == set(y)
        for k in x:
            assert torch.equal(x[k], y[k]), k
    assert torch.equal(regenerate(b.manifest_path, 3)["recon_fast"], read_sample(b.manifest_path, 3)["recon_fast"])


def test_calibrated_recon_is_in_activity_units_at_every_level(sims):
    _, b, _ = sims
    s = read_sample(b.manifest_path, 0)
    body = s["labels"] > 0
    truth = float(s["activity"][body].mean())
    for level in ("full", "fast", "seventh"):
        assert float(s[f"recon_{level}"][body].mean()) == pytest.approx(truth, rel=0.1), level


def test_reconstruct_refuses_its_own_source_folder(sims):
    a, _, _ = sims
    with pytest.raises(InputError, match="lies inside"):
        reconstruct_simulation(a.manifest_path, a.out_dir / "sub", {"iterations": 1, "subsets": 1}, progress=False)


def test_repeats_give_each_copy_its_own_draw(sims):
    from spectdl.data.transforms import RandomAxialSlice

    a, _, _ = sims
    ds = SimulatedDataset(a.manifest_path, "train", input=["activity"], target=["activity"],
                          transform=RandomAxialSlice(), repeats=6, record_params=True)
    assert len(ds) == 12
    params = {ds[i]["transform_params"] for i in range(0, 12, 2)}  # the six copies of sample 0
    assert len(params) > 1
    assert ds[3]["transform_params"] == ds[3]["transform_params"]


def test_training_normalisation_equals_what_inference_applies():
    g = torch.Generator().manual_seed(0)
    spect = torch.rand(1, 12, 12, 8, generator=g) * 5
    ct = torch.rand(1, 12, 12, 8, generator=g) * 1500 - 1000
    sample = {"input": torch.cat([spect, ct]), "target": torch.rand(1, 12, 12, 8, generator=g) * 3,
              "labels": torch.randint(0, 4, (1, 12, 12, 8), generator=g)}
    spec = {"inputs": ["mean", 1000.0], "offsets": [0.0, 1000.0], "output": 0, "output_min": 0.0}
    out, record = NormalizeChannels(spec)(sample)
    x_inf, scales = Normalization.from_meta({"normalization": spec}).apply(sample["input"])
    assert torch.allclose(out["input"], x_inf, rtol=1e-6)
    assert float(out["input"][0].mean()) == pytest.approx(1.0, rel=1e-6)
    assert torch.allclose(out["input"][1], (ct[0] + 1000) / 1000, rtol=1e-6)
    assert float(out["target"].mean()) == pytest.approx(1.0, rel=1e-6)
    assert torch.equal(replay(sample, record)["input"], out["input"])
    assert scales[0] == pytest.approx(float(spect.double().mean()))
    with pytest.raises(InputError, match="offset"):
        Normalization(("mean",), output=0, offsets=(5.0,))


def test_mask_from_labels_and_centre_crop():
    lab = torch.zeros(1, 9, 9, dtype=torch.int64)
    lab[0, 4, 4] = 6
    out, _ = MaskFromLabels([6])({"labels": lab})
    assert out["lesion_mask"].dtype == torch.float32 and float(out["lesion_mask"].sum()) == 1.0
    crop, spec = CentreCrop((3, 3))({"input": torch.arange(81.0).reshape(1, 9, 9)})
    assert crop["input"].shape == (1, 3, 3) and float(crop["input"][0, 1, 1]) == 40.0
    assert spec["start"] == [3, 3]


def test_a_phantom_with_empty_per_sample_lists_simulates(tmp_path):
    cfg = {"phantom": "bone_torso", "phantom_kwargs": {"lesions": 0}, "grid": {"shape": [48, 48, 24], "voxel_size_mm": 10.0},
           "n_samples": 2, "batch_size": 2, "orbit": {"n_angles": 8}, "counts": {"total": 1.0e4},
           "splits": {"train": 1.0}, "compression": "none"}
    res = simulate(cfg, tmp_path / "sim", workers=1, progress=False)
    s = read_sample(res.manifest_path, 1)
    assert float(s["labels"].eq(6).sum()) == 0  # no lesion label
