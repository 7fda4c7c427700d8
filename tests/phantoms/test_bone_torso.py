import math

import pytest
import torch
import torch.nn.functional as F

from spectdl.errors import GeometryError, InputError
from spectdl.geometry import VoxelGrid
from spectdl.io.ct import ct_to_mu
from spectdl.materials import mu_per_cm
from spectdl.phantoms import Phantom, bone_torso, nema_iec
from spectdl.phantoms.bone_torso import LABELS

DEFAULT = VoxelGrid((128, 128, 64), 4.0)
SMALL = VoxelGrid((64, 64, 32), 8.0)
TINY = VoxelGrid((48, 48, 24), 10.0)
ORGANS = ("soft_tissue", "bone", "kidney", "bladder", "lung")


def _axes(grid):
    return [(torch.arange(n, dtype=torch.float64) - (n - 1) / 2) * s
            for n, s in zip(grid.shape, grid.voxel_size_mm)]


def _voxel(grid, point):
    return tuple(min(max(round(c / s + (n - 1) / 2), 0), n - 1)
                 for c, s, n in zip(point, grid.voxel_size_mm, grid.shape))


def _interior(mask):
    """Voxels whose whole 3×3×3 neighbourhood is in ``mask`` ([X, Y, Z] bool)."""
    out = (~mask).float()[None, None]
    return F.max_pool3d(out, 3, 1, 1)[0, 0] == 0


def _same(p, q):
    return (torch.equal(p.activity, q.activity) and torch.equal(p.mu_per_cm, q.mu_per_cm)
            and torch.equal(p.labels, q.labels) and torch.equal(p.ct_hu, q.ct_hu)
            and torch.equal(p.info["lesion_mask"], q.info["lesion_mask"]))


def test_shapes_labels_and_padded_lesion_info():
    p = bone_torso(batch_size=2, seed=3, lesions=(1, 3))
    shape = (2, 1, 128, 128, 64)
    assert isinstance(p, Phantom) and p.grid == DEFAULT
    for t in (p.activity, p.mu_per_cm, p.ct_hu, p.info["lesion_fraction"]):
        assert t.shape == shape and t.dtype == torch.float32
    assert p.labels.shape == shape and p.labels.dtype == torch.int64
    assert p.info["lesion_mask"].shape == shape and p.info["lesion_mask"].dtype == torch.bool
    assert p.label_names == LABELS and set(ORGANS) | {"outside", "lesion"} == set(LABELS)
    n = p.info["n_lesions"]
    assert n.shape == (2,) and bool(((n >= 1) & (n <= 3)).all())
    assert p.info["lesion_centre_mm"].shape == (2, 3, 3) and p.info["lesion_semi_axes_mm"].shape == (2, 3, 3)
    for b in range(2):
        k = int(n[b])
        assert not p.info["lesion_centre_mm"][b, :k].isnan().any()
        assert p.info["lesion_centre_mm"][b, k:].isnan().all()
        assert p.info["lesion_contrast"][b, k:].isnan().all()
        assert not p.info["lesion_hot"][b, k:].any() and bool((p.info["lesion_site"][b, k:] == -1).all())
        semi = p.info["lesion_semi_axes_mm"][b, :k]
        assert bool(((semi >= 3.0) & (semi <= 10.0)).all())  # diameters 6–20 mm
    assert p.info["vertebra_centres_mm"].shape == (2, len(p.info["vertebra_names"]), 3)
    assert {"L1", "L3", "L5", "T12"} <= set(p.info["vertebra_names"])
    from spectdl import phantoms

    assert "bone_torso" in phantoms.__all__


def test_deterministic_and_each_sample_regenerates_from_its_seed():
    p = bone_torso(SMALL, batch_size=3, seed=11, lesions=(2, 5))
    assert _same(p, bone_torso(SMALL, batch_size=3, seed=11, lesions=(2, 5)))
    q = bone_torso(SMALL, batch_size=3, seed=12, lesions=(2, 5))
    assert not torch.equal(p.labels[0], q.labels[0]) and not torch.equal(p.activity[0], q.activity[0])
    for b in range(3):
        one = bone_torso(SMALL, batch_size=1, seed=p.info["seeds"][b], lesions=(2, 5))
        assert torch.equal(one.activity[0], p.activity[b]) and torch.equal(one.labels[0], p.labels[b])
        assert torch.equal(one.ct_hu[0], p.ct_hu[b])
        assert torch.equal(one.info["lesion_mask"][0], p.info["lesion_mask"][b])
        torch.testing.assert_close(one.info["lesion_centre_mm"][0], p.info["lesion_centre_mm"][b],
                                   rtol=0, atol=0, equal_nan=True)
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    assert _same(bone_torso(TINY, 2, generator=g1), bone_torso(TINY, 2, generator=g2))


@pytest.mark.parametrize("grid", [DEFAULT, SMALL, TINY], ids=["4mm", "8mm", "10mm"])
def test_labels_cover_the_activity_and_organs_follow_the_table(grid):
    p = bone_torso(grid, batch_size=3, seed=20, lesions=0)
    up = p.info["uptake"]
    # the drawn concentrations lie in the table's ranges
    assert bool(((up["bone"] >= 4) & (up["bone"] <= 8)).all())
    assert bool(((up["kidney"] >= 2) & (up["kidney"] <= 4)).all())
    assert bool(((up["bladder"] >= 10) & (up["bladder"] <= 30)).all())
    for b in range(3):
        act, lab = p.activity[b, 0], p.labels[b, 0]
        assert bool((lab[act > 0] > 0).all())
        assert bool((act[lab == 0] == 0).all())
        assert {int(v) for v in lab.unique()} == {LABELS[n] for n in ("outside", *ORGANS)}
        soft = act[lab == LABELS["soft_tissue"]]
        assert float(soft.median()) == 1.0 and 1.0 <= float(soft.mean()) < 1.1
        # partial volume lowers the mean of small or thin regions, more so on coarse grids
        for name, lo in (("bone", 0.7), ("kidney", 0.82), ("bladder", 0.82)):
            ratio = float(act[lab == LABELS[name]].mean() / soft.mean() / up[name][b])
            assert lo < ratio <= 1.0, (name, ratio)
        bone_ratio = float(act[lab == LABELS["bone"]].mean() / soft.mean())
        assert 0.7 * 4 < bone_ratio <= 8
        lung = float(act[lab == LABELS["lung"]].mean())
        assert 0.3 <= lung < 0.3 * 1.4


def test_mu_and_ct_hu_of_the_materials():
    p = bone_torso(batch_size=2, seed=5, lesions=0)
    mu_bone, mu_water, mu_lung = (torch.tensor(mu_per_cm(m, 140.0), dtype=torch.float32)
                                  for m in ("bone", "water", "lung"))
    for b in range(2):
        lab, mu, hu, act = p.labels[b, 0], p.mu_per_cm[b, 0], p.ct_hu[b, 0], p.activity[b, 0]
        bone = _interior(lab == LABELS["bone"])
        assert int(bone.sum()) > 500
        assert bool((mu[bone] == mu_bone).all())
        uptake = torch.tensor(float(p.info["uptake"]["bone"][b]), dtype=torch.float32)
        assert bool((act[bone] == uptake).all())
        assert torch.allclose(ct_to_mu(hu[bone], 140.0, 120), mu[bone], rtol=1e-5)
        assert 1000 < float(hu[bone].min()) == float(hu[bone].max()) < 3071
        soft = act == 1.0  # wholly soft tissue (any other region changes the activity)
        assert int(soft.sum()) > 0.9 * int((lab == LABELS["soft_tissue"]).sum())
        assert bool((mu[soft] == mu_water).all()) and bool((hu[soft] == 0).all())
        water = mu == mu_water  # soft tissue, kidneys, bladder: all water
        assert bool((hu[water] == 0).all()) and int(water.sum()) > int(soft.sum())
        assert bool((mu[lab == 0] == 0).all()) and bool((hu[lab == 0] == -1000).all())
        lung = _interior(lab == LABELS["lung"])
        assert lung.any() and bool((mu[lung] == mu_lung).all())
        assert bool(((hu[lung] > -800) & (hu[lung] < -600)).all())
        assert float(hu.min()) >= -1000 and float(hu.max()) <= 3071


def test_lesions_lie_in_bone_inside_the_body_and_change_only_the_activity():
    kw = dict(grid=SMALL, batch_size=4, seed=30)
    none = bone_torso(lesions=0, **kw)  # the anatomy of a seed does not depend on the lesions
    hot = bone_torso(lesions=(4, 4), cold_lesion_fraction=0.0, **kw)
    cold = bone_torso(lesions=(4, 4), cold_lesion_fraction=1.0, **kw)
    assert torch.equal(hot.mu_per_cm, none.mu_per_cm) and torch.equal(cold.mu_per_cm, none.mu_per_cm)
    assert bool(hot.info["lesion_hot"].all()) and not cold.info["lesion_hot"].any()
    assert torch.equal(hot.info["lesion_centre_mm"], cold.info["lesion_centre_mm"])
    for p in (hot, cold):
        mask = p.info["lesion_mask"]
        assert bool(mask.reshape(4, -1).any(1).all())
        assert bool((p.labels[mask] == LABELS["lesion"]).all()) and bool((none.labels[mask] > 0).all())
        assert bool((p.info["lesion_fraction"][~mask] < 0.5).all())
    assert bool((hot.activity >= none.activity - 1e-5).all())
    assert bool((cold.activity <= none.activity + 1e-5).all())
    assert bool((hot.activity > none.activity + 1e-3)[hot.info["lesion_mask"]].all())
    assert bool((cold.activity < none.activity - 1e-3)[cold.info["lesion_mask"]].all())
    k_hot, k_cold = hot.info["lesion_contrast"], cold.info["lesion_contrast"]
    assert bool(((k_hot >= 2) & (k_hot <= 5)).all()) and torch.allclose(k_cold, 1 / k_hot)
    for b in range(4):
        for j in range(4):
            c = hot.info["lesion_centre_mm"][b, j].tolist()
            v = _voxel(SMALL, c)
            assert float(none.activity[b, 0][v]) > 1.0, (b, j, c)  # the centre voxel holds bone


def test_hot_lesion_holds_its_contrast_times_bone():
    p = bone_torso(batch_size=4, seed=41, lesions=1, cold_lesion_fraction=0.0, lesion_diameter_mm=(16, 20))
    for b in range(4):
        c = p.info["lesion_centre_mm"][b, 0].tolist()
        expected = float(p.info["lesion_contrast"][b, 0] * p.info["uptake"]["bone"][b])
        assert float(p.info["lesion_activity"][b, 0]) == pytest.approx(expected)
        assert float(p.activity[b, 0][_voxel(DEFAULT, c)]) == pytest.approx(expected, rel=1e-5)
        vol = float(p.info["lesion_fraction"][b].sum()) * DEFAULT.voxel_volume_ml * 1000
        semi = p.info["lesion_semi_axes_mm"][b, 0]
        assert vol <= 4 / 3 * math.pi * float(semi.prod()) * 1.15  # clipped to the body at most


def test_bladder_volume_follows_the_seed():
    p = bone_torso(batch_size=4, seed=50, lesions=0)
    drawn = p.info["bladder_volume_ml"]
    rendered = (p.labels == LABELS["bladder"]).reshape(4, -1).sum(1).double() * DEFAULT.voxel_volume_ml
    assert torch.allclose(rendered, drawn, rtol=0.08)
    assert float(drawn.max() - drawn.min()) > 50
    assert torch.equal(torch.argsort(rendered), torch.argsort(drawn))
    # fuller bladders reach higher
    z = _axes(DEFAULT)[2]
    top = [float(z[(p.labels[b, 0] == LABELS["bladder"]).any(0).any(0)].max()) for b in range(4)]
    assert torch.equal(torch.argsort(torch.tensor(top)), torch.argsort(drawn))
    fixed = bone_torso(SMALL, batch_size=2, seed=1, bladder_volume_ml=300.0, lesions=0)
    vol = (fixed.labels == LABELS["bladder"]).reshape(2, -1).sum(1).double() * SMALL.voxel_volume_ml
    assert torch.allclose(vol, torch.full((2,), 300.0, dtype=torch.float64), rtol=0.1)


def test_spine_curvature_and_body_size_vary_with_the_seed():
    p = bone_torso(batch_size=6, seed=60, lesions=0)
    lateral = p.info["spine_lateral_mm"]
    assert float(lateral[:, 0].std()) > 3.0 and float(p.info["lordosis_mm"].std()) > 2.0
    x, y, z = _axes(DEFAULT)
    names = p.info["vertebra_names"]
    l3 = p.info["vertebra_centres_mm"][:, names.index("L3")]
    k = int(torch.argmin((z - float(l3[0, 2])).abs()))
    measured = []
    for b in range(6):
        # the vertebral body (semi-axes 22 × 16 mm) in the slice through its centre
        bone = (p.labels[b, 0, :, :, k] == LABELS["bone"]) & (x[:, None].abs() < 40) \
            & ((y[None, :] - float(l3[b, 1])).abs() < 12)
        w = p.activity[b, 0, :, :, k].double() * bone
        measured.append(float((w.sum(1) * x).sum() / w.sum()))
    measured = torch.tensor(measured, dtype=torch.float64)
    assert torch.allclose(measured, l3[:, 0], atol=1.0)
    assert float(measured.max() - measured.min()) > 8.0
    # body width at z = 0 tracks the width scale (half-width 160 + (145 − 160)·20/60 = 155 mm there)
    k0 = int(torch.argmin(z.abs()))
    body = p.labels[:, 0, :, :, k0] > 0
    width = torch.tensor([float(x[body[b].any(1)].max() - x[body[b].any(1)].min()) + 4.0 for b in range(6)],
                         dtype=torch.float64)
    expected = 2 * 155.0 * p.info["width_scale"]
    assert torch.allclose(width / expected, torch.ones(6, dtype=torch.float64), atol=0.03)
    ws, ds = p.info["width_scale"], p.info["depth_scale"]
    assert bool(((ws >= 0.87) & (ws <= 1.13) & (ds >= 0.87) & (ds <= 1.13)).all())
    assert float(ws.max() - ws.min()) > 0.05


@pytest.mark.parametrize("grid", [SMALL, TINY, VoxelGrid((110, 64, 60), 4.42)], ids=["8mm", "10mm", "4.42mm"])
def test_other_grids_hold_the_same_anatomy(grid):
    p = bone_torso(grid, batch_size=2, seed=2, lesions=(2, 2))
    q = bone_torso(DEFAULT, batch_size=2, seed=2, lesions=(2, 2))

    def ml(ph, name):
        return (ph.labels == LABELS[name]).reshape(2, -1).sum(1).double() * ph.grid.voxel_volume_ml

    assert bool((ml(p, "soft_tissue") > 8000).all())  # ≈ π·155·100 mm² × 240 mm of torso
    for name in ("bone", "kidney", "bladder"):
        assert torch.allclose(ml(p, name), ml(q, name), rtol=0.2), name
    assert torch.equal(p.info["bladder_volume_ml"], q.info["bladder_volume_ml"])
    assert bool(p.info["lesion_mask"].reshape(2, -1).any(1).all())
    assert bool((p.labels[p.activity > 0] > 0).all())


def test_bad_inputs_name_the_argument():
    with pytest.raises(GeometryError, match="grid: expected a 3-D VoxelGrid"):
        bone_torso(VoxelGrid((64, 64), 4.0))
    with pytest.raises(GeometryError, match="grid: the bone torso needs .* at least 400 mm along x"):
        bone_torso(VoxelGrid((64, 64, 64), 4.0))
    with pytest.raises(GeometryError, match="along z"):
        bone_torso(VoxelGrid((128, 128, 32), 4.0))
    bad = [
        (dict(lesions=(-1, 2)), "lesions"),
        (dict(lesions=-2), "lesions"),
        (dict(lesions=(1.5, 2)), "lesions: expected integers"),
        (dict(lesions=(3, 1)), "lesions: expected low <= high"),
        (dict(cold_lesion_fraction=1.5), "cold_lesion_fraction"),
        (dict(lesion_contrast=(0.5, 2.0)), "lesion_contrast"),
        (dict(lesion_diameter_mm=(0.0, 5.0)), "lesion_diameter_mm"),
        (dict(bone_uptake=(-1.0, 2.0)), "bone_uptake"),
        (dict(bladder_volume_ml=0.0), "bladder_volume_ml"),
        (dict(batch_size=0), "batch_size"),
        (dict(dtype=torch.int32), "dtype"),
        (dict(seed=1, generator=torch.Generator()), "seed, generator"),
        (dict(energy_kev=10.0), "energy_kev"),
    ]
    for kwargs, match in bad:
        with pytest.raises(InputError, match=match):
            bone_torso(SMALL, **kwargs)


def test_ct_hu_is_carried_by_to_and_filled_by_nema_iec():
    p = bone_torso(TINY, seed=1, lesions=1)
    q = p.to(dtype=torch.float64)
    assert q.ct_hu.dtype == torch.float64 and torch.equal(q.ct_hu.float(), p.ct_hu)
    assert torch.equal(q.info["lesion_mask"], p.info["lesion_mask"])
    n = nema_iec(VoxelGrid((80, 64, 48), 4.42), ratio=4.0)
    assert n.ct_hu.shape == n.activity.shape and n.ct_hu.dtype == torch.float32
    lab = n.labels[0, 0]
    assert bool((n.ct_hu[0, 0][lab == 0][n.mu_per_cm[0, 0][lab == 0] == 0] == -1000).all())
    full = n.mu_per_cm[0, 0] == torch.tensor(mu_per_cm("water", 140.0), dtype=torch.float32)
    assert int(full.sum()) > 1000 and bool((n.ct_hu[0, 0][full] == 0).all())
    lung = _interior(lab == 2)
    assert lung.any() and bool(((n.ct_hu[0, 0][lung] > -800) & (n.ct_hu[0, 0][lung] < -600)).all())
    assert n.to(dtype=torch.float64).ct_hu.dtype == torch.float64
