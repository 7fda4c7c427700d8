"""wbs-planar's config, paper numbers and simulated pairs (the run itself: test_studies_smoke)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import spectdl
from spectdl.data import SimulatedDataset, simulate
from spectdl.errors import ConfigError
from spectdl.studies import wbs_planar as wbs
from spectdl.studies.config import resolve_config

YAML = Path(spectdl.__file__).parent / "configs" / "studies" / "wbs-planar.yaml"


@pytest.mark.parametrize("scale", ["smoke", "quick", "paper"])
def test_every_scale_resolves_to_the_issue_setup(scale):
    cfg = resolve_config(wbs.WbsConfig, YAML, scale=scale)
    assert cfg.speeds == (2.0, 3.0) and cfg.scan.order == (3.0, 2.0)
    lo = cfg.sim.counts.total_range[0]
    # The guideline's 1.5 M counts per view at 1x: the total covers both views, the anterior's share
    # is at least 47 % in these phantoms (test_each_view_has_the_guidelines_counts measures it).
    assert 0.47 * lo >= 1.5e6
    assert set(cfg.sim.phantom_kwargs["diagnoses"]) == {"normal", "benign", "malignant"}
    assert 0.4 < cfg.sim.phantom_kwargs["diagnoses"]["malignant"] < 0.55  # the paper: 39 of 83 positive
    t = cfg.train_config("rrdb_real", 3.0, "features.safetensors")
    assert t.model.name == "rrdbnet" and t.gan.discriminator.name == "vgg_discriminator"
    assert (t.optim.lr, tuple(t.optim.betas)) == (2.0e-4, (0.9, 0.999))
    if scale == "paper":
        assert t.model.kwargs["num_blocks"] == 9 and cfg.patch_size == 192 and t.data.batch_size == 1
        assert t.trainer.max_epochs == 800 and cfg.sim.grid.shape == (1024, 256)
    assert t.checkpoint.metadata["normalization"] == {"inputs": [20.0], "output": 0, "output_min": 0.0}


def test_the_perceptual_loss_takes_local_weights_or_the_fallback(tmp_path):
    weights = tmp_path / "vgg19.pth"
    weights.write_bytes(b"")
    cfg = resolve_config(wbs.WbsConfig, YAML, scale="smoke", overrides=[f"perceptual.weights={weights}"])
    assert cfg.train_config("rrdb_simu", 2.0, "f.safetensors").loss["vgg_weights_path"] == str(weights)
    with pytest.raises(ConfigError, match=r"lpips.lin_weights: /nowhere/alex.pth is not a file"):
        resolve_config(wbs.WbsConfig, YAML, overrides=["lpips.lin_weights=/nowhere/alex.pth"])
    cfg = resolve_config(wbs.WbsConfig, YAML, scale="smoke")
    loss = cfg.train_config("rrdb_simu", 2.0, "f.safetensors").loss
    assert loss["planar_features_path"] == "f.safetensors" and loss["study"] == "planar"


def test_config_refuses_what_the_study_cannot_do():
    with pytest.raises(ConfigError, match=r"speeds: 4 needs sim.counts.levels.x4: 0.25"):
        resolve_config(wbs.WbsConfig, YAML, overrides=["speeds=[2,4]", "scan.order=[4,2]"])
    with pytest.raises(ConfigError, match="scan.order"):
        resolve_config(wbs.WbsConfig, YAML, overrides=["scan.order=[2]"])
    with pytest.raises(ConfigError, match="--data is not supported"):
        resolve_config(wbs.WbsConfig, YAML, overrides=["data=cases.csv"])
    with pytest.raises(ConfigError, match="registration"):
        resolve_config(wbs.WbsConfig, YAML, overrides=["preprocessing.registration=bspline"])


def test_paper_values_are_the_issues_tables():
    by = {(p.table, p.metric, p.method, p.where.get("speed")): p.value for p in wbs.PAPER}
    assert [by[("table4", "fid", m, 2.0)] for m in ("rrdb_real", "rrdb_simu", "input")] == [0.15, 0.18, 0.47]
    assert [by[("table4", "fid", m, 3.0)] for m in ("rrdb_real", "rrdb_simu", "input")] == [0.19, 0.20, 0.98]
    assert [by[("table4", "lpips", m, 2.0)] for m in ("rrdb_real", "rrdb_simu", "input")] == [0.17, 0.16, 0.19]
    assert [by[("table4", "lpips", m, 3.0)] for m in ("rrdb_real", "rrdb_simu", "input")] == [0.18, 0.19, 0.23]
    assert [by[("table2", m, "reference", 2.0)] for m in ("accuracy", "sensitivity", "specificity")] == \
        [84.3, 87.18, 81.82]
    assert all("not comparable" in p.note for p in wbs.PAPER if p.table == "table4")


def test_simu_pairs_are_integer_counts_thinned_to_one_over_the_speed(tmp_path):
    cfg = resolve_config(wbs.WbsConfig, YAML, scale="smoke")
    res = simulate(cfg.sim.replace(n_samples=2, splits={"test": 1.0}), tmp_path / "sim", progress=False)
    ds = SimulatedDataset(res.manifest_path, "test", keys=("counts_full", "counts_x2", "counts_x3"))
    for i in range(len(ds)):
        s = ds[i]
        full = s["counts_full"].double()
        for name, f in (("counts_x2", 0.5), ("counts_x3", 1 / 3)):
            x = s[name].double()
            assert torch.equal(x, x.round()) and bool((x <= full).all())  # a binomial subset of each pixel
            # Binomial thinning: E[Σx] = f·Σfull, SD = sqrt(Σfull·f(1−f)); within 4 SD.
            n = float(full.sum())
            assert abs(float(x.sum()) - f * n) < 4 * math.sqrt(n * f * (1 - f))


def test_each_view_has_the_guidelines_counts(tmp_path):
    cfg = resolve_config(wbs.WbsConfig, YAML, scale="smoke")
    res = simulate(cfg.sim.replace(n_samples=8, batch_size=8, shard_size=8, splits={"test": 1.0},
                                   counts=cfg.sim.counts.replace(total=cfg.sim.counts.total_range[0])),
                   tmp_path / "sim", progress=False)
    ds = SimulatedDataset(res.manifest_path, "test", keys=("expected",))
    shares = torch.stack([ds[i]["expected"].double().sum((1, 2)) for i in range(len(ds))])
    shares = shares / shares.sum(1, keepdim=True)
    assert float(shares.min()) >= 0.47  # neither view falls below 47 % of the total
    assert float(shares.min()) * cfg.sim.counts.total_range[0] >= 1.5e6
