"""mpi-projection's config, paper numbers and claims (the run itself: test_studies_smoke)."""

from __future__ import annotations

from pathlib import Path

import pytest

import spectdl
from spectdl.errors import ConfigError
from spectdl.studies import mpi_projection as mpi
from spectdl.studies.config import resolve_config

YAML = Path(spectdl.__file__).parent / "configs" / "studies" / "mpi-projection.yaml"


@pytest.mark.parametrize("scale", ["smoke", "quick", "paper"])
def test_every_scale_resolves_to_the_issue_geometry(scale):
    cfg = resolve_config(mpi.MpiConfig, YAML, scale=scale)
    o = cfg.sim.orbit
    assert (o.n_angles, o.arc_deg, o.start_deg) == (32, 180.0, 45.0)
    assert cfg.sim.resolution.fwhm_mm == 7.6 and cfg.sim.counts.activity.sensitivity_cps_per_mbq == 79.0
    assert [cfg.fraction(lv) for lv in cfg.levels] == [0.5, 0.25, 0.125]
    assert (cfg.recon.iterations, cfg.recon.subsets, cfg.recon.butterworth_order) == (8, 2, 10)
    if scale != "smoke":
        assert cfg.sim.grid.shape == (64, 64, 64) and cfg.sim.grid.voxel_size_mm == 6.4


def test_cutoff_units_convert_by_the_nyquist_formula():
    rc = mpi.ReconConfig(butterworth_cutoff=0.39, cutoff_unit="cycles_per_cm")
    assert rc.cutoff_nyquist(6.4) == pytest.approx(0.39 * 0.64 / 0.5)
    assert mpi.ReconConfig().cutoff_nyquist(6.4) == 0.45  # the study's unit: a fraction of Nyquist


def test_config_refuses_what_the_study_cannot_do():
    with pytest.raises(ConfigError, match="levels"):
        resolve_config(mpi.MpiConfig, YAML, overrides=["levels=[half,tenth]"])
    with pytest.raises(ConfigError, match="reference_max"):
        resolve_config(mpi.MpiConfig, YAML, overrides=["evaluation.conventions=[prediction_max]"])
    with pytest.raises(ConfigError, match="normals"):
        resolve_config(mpi.MpiConfig, YAML, overrides=["normals=1"])


def test_paper_values_are_the_issues_tables():
    by = {(p.table, p.metric, p.method, p.where["level"]): p.value for p in mpi.PAPER if "level" in p.where}
    assert by[("table1", "psnr", "input", 0.5)] == 33.22 and by[("table1", "rmse", "pix2pix", 0.125)] == 6.26
    assert by[("table2", "psnr", "pix2pix", 0.25)] == 40.17 and by[("figure5", "pearson", "pix2pix", 0.125)] == 0.987
    # The PSNR gains the paper states (12.4 %, 25.2 %, 32.1 %) follow from its Table 1.
    gains = [100 * (by[("table1", "psnr", "pix2pix", f)] / by[("table1", "psnr", "input", f)] - 1)
             for f in (0.5, 0.25, 0.125)]
    assert gains == pytest.approx([12.4, 25.2, 32.1], abs=0.05)
    # Table 1's constant peak: RMSE·10^(PSNR/20) is 257–261 counts for every level and method.
    peaks = [by[("table1", "rmse", m, f)] * 10 ** (by[("table1", "psnr", m, f)] / 20)
             for m in ("input", "pix2pix") for f in (0.5, 0.25, 0.125)]
    assert min(peaks) > 256 and max(peaks) < 262
