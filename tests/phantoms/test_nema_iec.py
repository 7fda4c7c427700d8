import math

import pytest
import torch

from spectdl.errors import GeometryError, InputError
from spectdl.geometry import VoxelGrid
from spectdl.materials import mu_per_cm
from spectdl.phantoms import nema_iec
from spectdl.phantoms.nema_iec import LABELS, SPHERE_DIAMETERS_MM

# Interior cross-section of the body (NEMA NU 2): half-disc of radius 147 mm, a 140 × 77 mm slab and
# two quarter discs of radius 77 mm; 180 mm long. Lung insert: 50 mm diameter.
_AREA_MM2 = math.pi * 147.0**2 / 2 + 140.0 * 77.0 + math.pi * 77.0**2 / 2
_LUNG_MM2 = math.pi * 25.0**2


def _coords(grid):
    axes = [
        (torch.arange(n, dtype=torch.float64) - (n - 1) / 2) * s
        for n, s in zip(grid.shape, grid.voxel_size_mm)
    ]
    return torch.meshgrid(*axes, indexing="ij")


@pytest.mark.parametrize(
    "grid, jitter",
    [
        (VoxelGrid((128, 128, 64), 4.0), 0.0),
        (VoxelGrid((80, 64, 48), 4.42), 3.0),
        (VoxelGrid((90, 70, 50), (3.5, 3.7, 4.1)), 2.0),
        (VoxelGrid((40, 32, 24), 8.0), 0.0),
    ],
)
def test_each_sphere_holds_ratio_times_its_volume(grid, jitter):
    ratio = 12.0
    p = nema_iec(grid, ratio=ratio, jitter_mm=jitter, seed=4)
    act = p.activity[0, 0].double()
    X, Y, Z = _coords(grid)
    voxel = math.prod(grid.voxel_size_mm)
    for k, d in enumerate(SPHERE_DIAMETERS_MM):
        c = p.info["sphere_centres_mm"][0, k]
        r = d / 2.0
        near = (X - c[0]) ** 2 + (Y - c[1]) ** 2 + (Z - c[2]) ** 2 < (r + 2 * max(grid.voxel_size_mm)) ** 2
        # The excess over the background is (ratio − 1)·background·(sphere fraction of the voxel).
        total = float((act[near] - 1.0).sum()) * voxel
        expected = (ratio - 1.0) * 4.0 / 3.0 * math.pi * r**3
        assert abs(total / expected - 1) < 0.02, (d, total / expected)


def test_background_and_lung_volumes_match_the_drawing():
    grid = VoxelGrid((80, 64, 48), 4.42)
    p = nema_iec(grid, ratio=0.0)
    voxel_ml = grid.voxel_volume_ml
    water = mu_per_cm("water", 140.0)
    lung_mu = mu_per_cm("lung", 140.0)
    sphere_ml = sum(4 / 3 * math.pi * (d / 2) ** 3 for d in SPHERE_DIAMETERS_MM) / 1000
    background_ml = float(p.activity.sum()) * voxel_ml
    expected = (_AREA_MM2 - _LUNG_MM2) * 180.0 / 1000 - sphere_ml
    assert abs(background_ml / expected - 1) < 2e-3
    # Around the lung axis (r < 35 mm, clear of the spheres) μ = water − (water − lung)·(lung fraction):
    # solve for the lung volume over the slices that lie wholly inside the 180 mm interior.
    X, Y, Z = _coords(grid)
    s = grid.voxel_size_mm[2]
    zs = Z[0, 0].abs() + s / 2 <= 90.0
    near = (X**2 + Y**2 < 35.0**2) & zs[None, None, :]
    lung_ml = float(((water - p.mu_per_cm[0, 0].double()) / (water - lung_mu))[near].sum()) * voxel_ml
    expected_lung = _LUNG_MM2 * int(zs.sum()) * s / 1000
    assert abs(lung_ml / expected_lung - 1) < 5e-3
    assert abs(float(p.mu_per_cm[0, 0, 40, 32, 24]) - lung_mu) < 1e-6  # on the lung axis
    assert float(p.mu_per_cm.max()) == pytest.approx(water, rel=1e-6)


def test_sphere_geometry_and_labels():
    grid = VoxelGrid((128, 128, 64), 4.0)
    p = nema_iec(grid, ratio=4.0)
    c = p.info["sphere_centres_mm"][0]
    torch.testing.assert_close(torch.hypot(c[:, 0], c[:, 1]), torch.full((6,), 57.2, dtype=torch.float64))
    torch.testing.assert_close(c[:, 2], torch.full((6,), 20.0, dtype=torch.float64))
    radii = torch.tensor(SPHERE_DIAMETERS_MM, dtype=torch.float64) / 2
    torch.testing.assert_close(p.info["sphere_radii_mm"], radii)
    lab, act = p.labels[0, 0], p.activity[0, 0]
    X, Y, Z = _coords(grid)
    for k, d in enumerate(SPHERE_DIAMETERS_MM):
        m = lab == LABELS[f"sphere_{int(d)}mm"]
        # Majority labelling: the labelled volume is the sphere's, within a few voxels.
        volume = 4 / 3 * math.pi * (d / 2) ** 3
        assert abs(int(m.sum()) * 64.0 - volume) < 3 * 64.0 + 0.25 * volume
        centroid = torch.stack([X[m].mean(), Y[m].mean(), Z[m].mean()])
        assert float((centroid - c[k]).norm()) < 2.0
        if d >= 17:  # these spheres hold voxels wholly inside them
            assert float(act[m].max()) == pytest.approx(4.0, rel=1e-6)
    # Regions hold their presets where a voxel is entirely inside them.
    assert float(act[lab == LABELS["background"]].median()) == pytest.approx(1.0)
    assert float(act[lab == LABELS["lung"]].median()) == 0.0
    # Majority labels: an outside voxel is at most half inside the body (ties go to outside).
    assert float(act[lab == 0].max()) <= 0.5 and float(p.mu_per_cm[0, 0][lab == 0].max()) <= 0.5 * 0.16
    water = mu_per_cm("water", 140.0)
    assert float(p.mu_per_cm[0, 0][lab == LABELS["background"]].median()) == pytest.approx(water, rel=1e-6)


def test_ratio_per_sphere_and_energy():
    grid = VoxelGrid((80, 64, 48), 4.42)
    ratios = [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    p = nema_iec(grid, ratio=ratios, background=2.0, energy_kev=208.0)
    for k, d in enumerate(SPHERE_DIAMETERS_MM):
        m = p.labels[0, 0] == LABELS[f"sphere_{int(d)}mm"]
        assert float(p.activity[0, 0][m].max()) <= 2.0 * max(ratios[k], 1.0) + 1e-5
    assert float(p.mu_per_cm.max()) == pytest.approx(mu_per_cm("water", 208.0), rel=1e-6)


def test_deterministic_jitter_and_batch_equivalence():
    grid = VoxelGrid((40, 32, 24), 8.0)
    a = nema_iec(grid, batch_size=3, jitter_mm=5.0, seed=2)
    assert torch.equal(a.activity, nema_iec(grid, batch_size=3, jitter_mm=5.0, seed=2).activity)
    assert not torch.equal(a.activity, nema_iec(grid, batch_size=3, jitter_mm=5.0, seed=3).activity)
    assert float(a.info["shift_mm"].abs().max()) <= 5.0 and not torch.equal(a.activity[0], a.activity[1])
    alone = nema_iec(grid, batch_size=1, jitter_mm=5.0, seed=a.info["seeds"][2])
    assert torch.equal(alone.activity[0], a.activity[2]) and torch.equal(alone.labels[0], a.labels[2])
    still = nema_iec(grid, batch_size=2)
    assert torch.equal(still.activity[0], still.activity[1])


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(grid=VoxelGrid((64, 64, 64), 4.0)), GeometryError, "grid: the NEMA IEC body needs .* along x"),
        (dict(grid=VoxelGrid((128, 128, 40), 4.0)), GeometryError, "along z"),
        (dict(grid=VoxelGrid((128, 128), 4.0)), GeometryError, "grid: expected a 3-D VoxelGrid"),
        (dict(ratio=-4.0), InputError, "ratio"),
        (dict(ratio=[4.0, 4.0]), InputError, "ratio: expected one value or 6"),
        (dict(jitter_mm=-1.0), InputError, "jitter_mm"),
        (dict(background=float("nan")), InputError, "background"),
    ],
)
def test_bad_input(kwargs, error, match):
    with pytest.raises(error, match=match):
        nema_iec(**kwargs)


def test_sphere_circle_radius_is_a_parameter():
    import torch

    from spectdl.errors import InputError
    from spectdl.phantoms import nema_iec

    c = nema_iec(sphere_circle_radius_mm=50.0).info["sphere_centres_mm"][0]
    assert torch.allclose(torch.linalg.norm(c[:, :2], dim=1), torch.full((6,), 50.0, dtype=c.dtype), atol=1e-9)
    with pytest.raises(InputError, match="sphere_circle_radius_mm"):
        nema_iec(sphere_circle_radius_mm=20.0)
