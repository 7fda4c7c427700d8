import math

import pytest
import torch

from spectdl.errors import GeometryError, InputError
from spectdl.geometry import VoxelGrid
from spectdl.materials import mu_per_cm
from spectdl.phantoms import cardiac
from spectdl.phantoms.cardiac import LABELS, PRESETS

_SMALL = VoxelGrid((64, 44, 36), 6.0)  # just holds the torso and the heart


def _mean(p, b, name):
    return float(p.activity[b, 0][p.labels[b, 0] == LABELS[name]].mean())


def test_shapes_labels_and_default_grid():
    p = cardiac(batch_size=2, seed=0)
    assert p.grid == VoxelGrid((64, 64, 64), 6.0)
    assert p.activity.shape == p.mu_per_cm.shape == p.labels.shape == (2, 1, 64, 64, 64)
    for b in range(2):
        present = set(torch.unique(p.labels[b]).tolist())
        assert present == set(LABELS.values())  # every organ is on the grid


def test_mpi_regions_hold_the_preset_and_tissue_attenuation():
    p = cardiac(_SMALL, batch_size=3, seed=1, tracer="mpi")
    water, lung = mu_per_cm("water", 140.0), mu_per_cm("lung", 140.0)
    for b in range(3):
        for name, value in PRESETS["mpi"].items():
            region = p.activity[b, 0][p.labels[b, 0] == LABELS[name]]
            torch.testing.assert_close(region, torch.full_like(region, value))
        mu, lab = p.mu_per_cm[b, 0], p.labels[b, 0]
        for name in ("background", "myocardium", "lv_blood", "rv_blood", "liver"):
            region = mu[lab == LABELS[name]]
            torch.testing.assert_close(region, torch.full_like(region, water))
        region = mu[lab == LABELS["lungs"]]
        torch.testing.assert_close(region, torch.full_like(region, lung))
        assert float(mu[lab == 0].abs().max()) == 0.0 and float(p.activity[b, 0][lab == 0].abs().max()) == 0.0


def test_rbc_imbv_on_the_label_map_is_in_range():
    p = cardiac(_SMALL, batch_size=6, seed=2, tracer="rbc")
    for b in range(6):
        imbv = _mean(p, b, "myocardium") / _mean(p, b, "lv_blood")
        assert 0.10 <= imbv <= 0.25
        assert imbv == pytest.approx(float(p.info["imbv"][b]), rel=1e-5)
        assert _mean(p, b, "rv_blood") == pytest.approx(_mean(p, b, "lv_blood"))
    fixed = cardiac(_SMALL, batch_size=2, seed=2, tracer="rbc", imbv=0.2)
    assert _mean(fixed, 1, "myocardium") / _mean(fixed, 1, "lv_blood") == pytest.approx(0.2, rel=1e-5)


@pytest.mark.parametrize("angle", [0.0, 180.0, None])
def test_defect_reduces_mean_myocardial_uptake_by_extent_times_severity(angle):
    extent, severity = 0.25, 0.6
    base = cardiac(batch_size=3, seed=3, tracer="mpi")
    hit = cardiac(batch_size=3, seed=3, tracer="mpi", defect_extent=extent, defect_severity=severity,
                  defect_angle_deg=angle)
    assert torch.equal(base.labels, hit.labels)
    for b in range(3):
        drop = 1 - _mean(hit, b, "myocardium") / _mean(base, b, "myocardium")
        frac = float(hit.info["defect_fraction"][b])
        # Exactly severity × (voxelised defect fraction); that fraction is the extent up to voxels.
        assert drop == pytest.approx(severity * frac, rel=1e-5)
        assert abs(frac - extent) < 0.04
        mask = hit.info["defect_mask"][b, 0]
        inside = hit.activity[b, 0][mask]
        torch.testing.assert_close(inside, torch.full_like(inside, 1 - severity))


def test_defect_sits_at_the_requested_wall():
    # An anterior defect (0°) lies on the LV's anterior side: its voxels are displaced towards +y
    # from the LV axis, an inferior one (180°) the other way.
    for angle, sign in ((0.0, 1.0), (180.0, -1.0)):
        p = cardiac(batch_size=1, seed=4, defect_extent=0.15, defect_angle_deg=angle)
        axes = [(torch.arange(64, dtype=torch.float64) - 31.5) * 6.0] * 3
        X, Y, Z = torch.meshgrid(*axes, indexing="ij")
        m = p.info["defect_mask"][0, 0]
        centroid = torch.stack([X[m].mean(), Y[m].mean(), Z[m].mean()])
        v = centroid - p.info["lv_centre_mm"][0]
        d = p.info["lv_axis"][0]
        perp = v - (v @ d) * d
        assert sign * float(perp[1]) > 5.0


def test_myocardial_volume_matches_the_truncated_shell():
    # Cavity: (u/L)² + (ρ/r)² ≤ 1 for u ≥ −L/2 has volume π r² L (2/3 + 1/2 − 1/24)
    # = 1.125 π r² L.
    # Shell: the same with (L + w, r + w), cut at the same plane, minus the cavity.
    grid = VoxelGrid((120, 84, 68), 3.0)
    p = cardiac(grid, batch_size=2, seed=6)
    for b in range(2):
        L, r, w = (float(p.info[k][b]) for k in ("lv_long_mm", "lv_short_mm", "lv_wall_mm"))
        lo, ro = L + w, r + w
        cavity = 1.125 * math.pi * r * r * L
        outer = math.pi * ro * ro * ((lo - lo / 3) - (-L / 2 + (L / 2) ** 3 / (3 * lo * lo)))
        counts = [int((p.labels[b, 0] == LABELS[n]).sum()) * 27.0 for n in ("lv_blood", "myocardium")]
        assert counts[0] == pytest.approx(cavity, rel=0.03)
        # The RV takes no LV voxels, so the myocardium is the whole shell.
        assert counts[1] == pytest.approx(outer - cavity, rel=0.04)


def test_supersampling_keeps_total_activity():
    grid = _SMALL
    one = cardiac(grid, seed=7, tracer="rbc", imbv=0.15)
    two = cardiac(grid, seed=7, tracer="rbc", imbv=0.15, supersample=2)
    assert float(two.activity.sum()) == pytest.approx(float(one.activity.sum()), rel=0.01)
    assert float(two.mu_per_cm.sum()) == pytest.approx(float(one.mu_per_cm.sum()), rel=0.01)
    # Partial volume: edge voxels hold mixtures.
    assert len(torch.unique(two.activity)) > len(torch.unique(one.activity))


def test_deterministic_and_batch_equivalent():
    grid = _SMALL
    a = cardiac(grid, batch_size=4, seed=8, tracer="rbc")
    assert torch.equal(a.activity, cardiac(grid, batch_size=4, seed=8, tracer="rbc").activity)
    assert not torch.equal(a.labels, cardiac(grid, batch_size=4, seed=9, tracer="rbc").labels)
    alone = cardiac(grid, batch_size=1, seed=a.info["seeds"][2], tracer="rbc")
    assert torch.equal(alone.activity[0], a.activity[2]) and torch.equal(alone.labels[0], a.labels[2])


def test_uptake_override():
    p = cardiac(_SMALL, seed=1, uptake={"liver": 0.0})
    assert float(p.activity[p.labels == LABELS["liver"]].abs().max()) == 0.0


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(tracer="fdg"), InputError, "tracer: unknown preset 'fdg'"),
        (dict(defect_extent=1.5), InputError, "defect_extent"),
        (dict(defect_severity=-0.1), InputError, "defect_severity"),
        (dict(imbv=(0.3, 0.1)), InputError, "imbv"),
        (dict(uptake={"spleen": 1.0}), InputError, "uptake: unknown region 'spleen'"),
        (dict(uptake={"liver": -1.0}), InputError, "uptake"),
        (dict(supersample=0), InputError, "supersample"),
        (dict(grid=VoxelGrid((64, 64), 6.0)), GeometryError, "grid: expected a 3-D VoxelGrid"),
        (dict(grid=VoxelGrid((48, 48, 64), 6.0)), GeometryError, "grid: the cardiac torso needs"),
    ],
)
def test_bad_input(kwargs, error, match):
    with pytest.raises(error, match=match):
        cardiac(seed=0, **kwargs)
