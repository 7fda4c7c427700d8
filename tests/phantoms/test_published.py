import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from spectdl.errors import GeometryError, InputError
from spectdl.geometry import VoxelGrid
from spectdl.io.interfile import write_interfile
from spectdl.materials import mu_per_cm
from spectdl.phantoms import brain_perfusion_slice, load_interfile, read_material_ranges
from spectdl.phantoms.published import SLICE_LABELS, material_mu_per_cm

WATER = mu_per_cm("water", 140.0)
BONE = mu_per_cm("bone", 140.0)


def test_material_names_map_to_nist_attenuation():
    assert material_mu_per_cm("Air", 140.0) == 0.0
    assert material_mu_per_cm("TissueSoft_DataBase", 140.0) == WATER
    assert material_mu_per_cm("Skull", 140.0) == mu_per_cm("bone", 140.0)
    assert material_mu_per_cm("Lung_ICRP", 208.0) == mu_per_cm("lung", 208.0)
    assert material_mu_per_cm("Titanium", 140.0, {"Titanium": 1.1}) == 1.1
    with pytest.raises(InputError, match="material 'Titanium'"):
        material_mu_per_cm("Titanium", 140.0)


def test_range_file_parsing_and_errors(tmp_path):
    f = tmp_path / "r.dat"
    f.write_text("3\n0 0 Air\n1 2 Water  true 0 0 1 1\n3 3 Skull\n")
    assert read_material_ranges(f) == [(0, 0, "Air"), (1, 2, "Water"), (3, 3, "Skull")]
    f.write_text("3\n0 0 Air\n1 1 Water\n")
    with pytest.raises(InputError, match="announces 3 rows; found 2"):
        read_material_ranges(f)
    f.write_text("2\n0 0 Air\n1 Water\n")
    with pytest.raises(InputError, match="row 3"):
        read_material_ranges(f)


def _synthetic(tmp_path, att_grid, shift_vox=(0, 0, 0)):
    """A 12×10×8 activity cube at 2 mm with a smaller attenuation crop holding materials 0/1/2."""
    grid = VoxelGrid((12, 10, 8), 2.0)
    act = torch.zeros(grid.shape)
    act[4:10, 2:8, 2:6] = 5.0  # one voxel off centre along x
    write_interfile(tmp_path / "act.h33", act, grid)
    att = torch.zeros(att_grid.shape)
    att[1:-1, 1:-1, 1:-1] = 1.0
    att[att_grid.shape[0] // 2, :, :] = torch.where(att[att_grid.shape[0] // 2] > 0, 2.0, 0.0)
    write_interfile(tmp_path / "att.h33", att, att_grid, number_format="unsigned integer")
    (tmp_path / "Attenuation_Test_Range.dat").write_text("3\n0 0 Air\n1 1 Water\n2 2 Bone\n")
    return grid, act, att


def test_crop_is_placed_on_the_activity_support_exactly(tmp_path):
    grid, act, att = _synthetic(tmp_path, VoxelGrid((8, 8, 6), 2.0))
    p = load_interfile(tmp_path / "act.h33", tmp_path / "att.h33")
    assert p.grid == grid and p.label_names == {"Air": 0, "Water": 1, "Bone": 2}
    # The attenuation's support (6×6×4) lands on the activity's (indices 4:10, 2:8, 2:6): the crop's
    # centre sits 1 voxel (2 mm) off the grid centre along x.
    assert p.info["attenuation_centre_mm"] == [2.0, 0.0, 0.0]
    assert torch.equal((p.mu_per_cm[0, 0] > 0), (p.activity[0, 0] > 0))
    assert sorted(torch.unique(p.mu_per_cm).tolist()) == pytest.approx([0.0, WATER, mu_per_cm("bone", 140.0)])
    expected_labels = torch.zeros(grid.shape, dtype=torch.int64)
    expected_labels[3:11, 1:9, 1:7] = att.long()
    assert torch.equal(p.labels[0, 0], expected_labels)


def test_general_resampling_matches_scipy_map_coordinates(tmp_path):
    # Different voxel sizes: trilinear resampling, compared with scipy's order-1 interpolation.
    att_grid = VoxelGrid((7, 6, 5), (3.0, 2.5, 3.5))
    grid, _, att = _synthetic(tmp_path, att_grid)
    p = load_interfile(tmp_path / "act.h33", tmp_path / "att.h33", align=(1.0, -0.5, 0.3))
    mu_native = torch.where(att == 1, WATER, torch.where(att == 2, mu_per_cm("bone", 140.0), 0.0)).numpy()
    coords = []
    for a in range(3):
        pos = (np.arange(grid.shape[a]) - (grid.shape[a] - 1) / 2) * grid.voxel_size_mm[a]
        coords.append((pos - (1.0, -0.5, 0.3)[a]) / att_grid.voxel_size_mm[a] + (att_grid.shape[a] - 1) / 2)
    mesh = np.meshgrid(*coords, indexing="ij")
    expected = ndimage.map_coordinates(mu_native, mesh, order=1, mode="constant", cval=0.0)
    np.testing.assert_allclose(p.mu_per_cm[0, 0].numpy(), expected, atol=1e-6)


def test_without_attenuation_and_with_a_linear_scale(tmp_path):
    _synthetic(tmp_path, VoxelGrid((12, 10, 8), 2.0))
    p = load_interfile(tmp_path / "act.h33")
    assert float(p.mu_per_cm.abs().max()) == 0.0 and p.labels is None
    q = load_interfile(
        tmp_path / "act.h33", tmp_path / "att.h33", attenuation_scale_per_cm=0.1, align="centre"
    )
    assert sorted(torch.unique(q.mu_per_cm).tolist()) == pytest.approx([0.0, 0.1, 0.2])
    with pytest.raises(InputError, match="align"):
        load_interfile(tmp_path / "act.h33", tmp_path / "att.h33", align="middle")


def test_missing_materials_file_and_unknown_values(tmp_path):
    _synthetic(tmp_path, VoxelGrid((12, 10, 8), 2.0))
    (tmp_path / "Attenuation_Test_Range.dat").unlink()
    with pytest.raises(InputError, match="no range-to-material file"):
        load_interfile(tmp_path / "act.h33", tmp_path / "att.h33")
    (tmp_path / "short.dat").write_text("1\n0 0 Air\n")
    with pytest.raises(InputError, match=r"values \[1.0, 2.0\].*in no range"):
        load_interfile(tmp_path / "act.h33", tmp_path / "att.h33", materials_file=tmp_path / "short.dat")


@pytest.mark.shared
def test_jaszczak_phantom(shared_data):
    folder = shared_data / "phantoms" / "Jaszczak_phantom"
    p = load_interfile(folder / "Jaszczak_238x237x134.h33", folder / "Jaszczak_238x237x134_Atn.h33")
    # README: 238×237×134 voxels of 0.939453×0.939453×1.25 mm; a 22 cm cylinder of water.
    assert p.grid == VoxelGrid((238, 237, 134), (0.939453, 0.939453, 1.25))
    assert p.activity.shape == p.mu_per_cm.shape == (1, 1, 238, 237, 134)
    mu = p.mu_per_cm[0, 0]
    inside = mu[mu > 0]
    assert 0.14 < float(inside.min()) <= float(inside.max()) < 0.16  # water at 140 keV
    assert p.label_names == {"Air": 0, "Water": 1}
    water_ml = float((mu > 0).sum()) * p.grid.voxel_volume_ml
    assert 4000 < water_ml < math.pi * 11.0**2 * 16.75  # less than the full cylinder (rods, spheres)
    # The six cold spheres: 6 components in the sphere section, widths as in the README.
    a = p.activity[0, 0].numpy()
    X, Y = np.meshgrid(np.arange(238) - 118.5, np.arange(237) - 118.0, indexing="ij")
    in_cyl = (np.hypot(X, Y) < 100)[:, :, None]
    section = np.zeros_like(a, bool)
    section[:, :, 28:80] = True
    lab, n = ndimage.label((a < 5) & in_cyl & section)
    assert n == 6
    boxes = ndimage.find_objects(lab)
    widths = sorted(max(s[0].stop - s[0].start, s[1].stop - s[1].start) * 0.939453 for s in boxes)
    np.testing.assert_allclose(widths, [9.5, 12.7, 15.9, 19.1, 25.4, 31.8], atol=2 * 0.939453)


@pytest.mark.shared
def test_brain_perfusion_phantom(shared_data):
    folder = shared_data / "phantoms" / "Brain_Perfusion_phantom"
    p = load_interfile(
        folder / "Brain_Perfusion_Source_120x120x120.h33", folder / "Brain_Perfusion_Attn_72x90x77.h33"
    )
    assert p.grid == VoxelGrid((120, 120, 120), 2.0)
    act, mu, lab = p.activity[0, 0], p.mu_per_cm[0, 0], p.labels[0, 0]
    # The 72×90×77 attenuation crop lands exactly on the head: supports coincide voxel for voxel.
    assert torch.equal(act > 0, mu > 0)
    assert p.label_names == {"Air": 0, "Skull": 1, "TissueSoft_DataBase": 2, "Brain": 3}
    # README values: 230 white matter, 920 grey matter, 1012 striatum -> brain; 100 skin -> soft tissue.
    for value in (230.0, 920.0, 1012.0):
        assert bool((lab[act == value] == 3).all())
    assert bool((lab[act == 100.0] == 2).all())
    torch.testing.assert_close(mu[lab == 3], torch.full_like(mu[lab == 3], WATER))
    torch.testing.assert_close(mu[lab == 1], torch.full_like(mu[lab == 1], mu_per_cm("bone", 140.0)))
    assert p.info["attenuation_centre_mm"] == [-2.0, 2.0, -1.0]
    # GATE's centred placement is one voxel off: the supports then disagree on thousands of voxels.
    centred = load_interfile(folder / "Brain_Perfusion_Source_120x120x120.h33",
                             folder / "Brain_Perfusion_Attn_72x90x77.h33", align="centre")
    assert int(((centred.activity > 0) != (centred.mu_per_cm > 0.01)).sum()) > 1000


# ---------------------------------------------------------------------------------------------
# brain_perfusion_slice


def _tiny_brain(folder):
    """A 24×20×10 head at 2 mm: skull ring (10, material 1), grey 800 / white 200 (material 2), and a
    'striatum' (1000) of 4 voxels on slice 3 and 9 voxels on slice 6, off centre so that the axis
    order shows."""
    folder.mkdir(exist_ok=True)
    grid = VoxelGrid((24, 20, 10), 2.0)
    act = torch.zeros(grid.shape)
    att = torch.zeros(grid.shape)
    act[2:22, 2:18, 1:9], att[2:22, 2:18, 1:9] = 10.0, 1.0
    act[4:20, 4:16, 1:9], att[4:20, 4:16, 1:9] = 800.0, 2.0
    act[4:12, 4:16, 1:9] = 200.0
    act[8:11, 12:15, 6] = 1000.0
    act[14:16, 5:7, 3] = 1000.0
    write_interfile(folder / "Tiny_Source.h33", act, grid)
    write_interfile(folder / "Tiny_Atn.h33", att, grid, number_format="unsigned integer")
    (folder / "Attenuation_Tiny_Range.dat").write_text("3\n0 0 Air\n1 1 Skull\n2 2 Brain\n")
    return act


def test_brain_slice_of_a_synthetic_volume(tmp_path):
    act = _tiny_brain(tmp_path / "tiny")
    p = brain_perfusion_slice(tmp_path / "tiny", dtype=torch.float64)  # the folder: headers found by name
    assert p.grid == VoxelGrid((128, 128), 2.0) and p.activity.shape == p.labels.shape == (1, 1, 128, 128)
    assert p.label_names == SLICE_LABELS and p.info["slice_index"] == 6 and p.info["striatum_voxels"] == 9
    assert p.info["striatum_voxels_per_slice"] == [0, 0, 0, 4, 0, 0, 9, 0, 0, 0]
    a, lab, mu = p.activity[0, 0], p.labels[0, 0], p.mu_per_cm[0, 0]
    # Centre pad: source [x, y] index (i, j) lands on (i + 52, j + 54), no interpolation.
    expected = torch.zeros(128, 128, dtype=torch.int64)
    src = act[:, :, 6]
    tissue = torch.where(src == 10, 2, torch.where(src > 0, 1, 0))
    expected[52:76, 54:74] = torch.where(src == 1000, 3, tissue)
    assert torch.equal(lab, expected)
    assert bool((a[lab == 3] == 6.0).all())
    bg = a[lab == 1]
    assert float(bg.mean()) == pytest.approx(1.0, abs=1e-12)
    # One factor on the background: the published 800 : 200 contrast is kept.
    scale = p.info["background_scale"]
    assert sorted(torch.unique(bg).tolist()) == pytest.approx([200 * scale, 800 * scale], rel=1e-12)
    assert bool((a[lab == 2] == 10 * scale).all())  # the skull gets the same factor
    # Background mean: the 9 striatum voxels (x 8-10) are taken from the white half (x 4-11).
    n_white, n_grey = 8 * 12 - 9, 8 * 12
    assert scale == pytest.approx((n_white + n_grey) / (200 * n_white + 800 * n_grey), rel=1e-12)
    torch.testing.assert_close(mu[lab == 1], torch.full_like(mu[lab == 1], WATER))
    torch.testing.assert_close(mu[lab == 2], torch.full_like(mu[lab == 2], BONE))
    assert float(mu[lab == 0].abs().max()) == 0 and float(a[lab == 0].abs().max()) == 0

    q = brain_perfusion_slice(tmp_path / "tiny" / "Tiny_Source.h33", slice_index=3, ratio=4.0,
                              background="uniform")
    assert q.info["slice_index"] == 3 and q.info["background_scale"] is None
    assert sorted(torch.unique(q.activity).tolist()) == [0.0, 1.0, 4.0]
    assert torch.equal(q.activity[0, 0][q.labels[0, 0] == 3], torch.full((4,), 4.0))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(slice_index=0), InputError, "slice_index: slice 0 holds no striatum"),
        (dict(slice_index=10), InputError, "slice_index"),
        (dict(ratio=0.0), InputError, "ratio"),
        (dict(background="flat"), InputError, "background"),
        (dict(striatum_value=999.0), InputError, "striatum_value"),
        (dict(grid=VoxelGrid((16, 128), 2.0)), GeometryError, "grid: the head spans"),
        (dict(grid=VoxelGrid((8, 8, 8), 2.0)), GeometryError, "grid"),
    ],
)
def test_brain_slice_bad_input(tmp_path, kwargs, error, match):
    _tiny_brain(tmp_path / "tiny")
    with pytest.raises(error, match=match):
        brain_perfusion_slice(tmp_path / "tiny", **kwargs)


@pytest.mark.shared
def test_brain_perfusion_slice_through_the_striatum(shared_data):
    folder = shared_data / "phantoms" / "Brain_Perfusion_phantom"
    p = brain_perfusion_slice(folder / "Brain_Perfusion_Source_120x120x120.h33")
    assert p.grid == VoxelGrid((128, 128), 2.0)
    assert p.activity.shape == p.mu_per_cm.shape == p.labels.shape == (1, 1, 128, 128)
    a, lab, mu = p.activity[0, 0].double(), p.labels[0, 0], p.mu_per_cm[0, 0].double()
    assert set(torch.unique(lab).tolist()) == {0, 1, 2, 3}

    # Independently of spectdl's reader: the raw uint16 file is (z, y, x) in C order; the striatum is
    # its hottest value and the chosen slice has the most of it.
    raw = np.fromfile(folder / "Brain_Perfusion_Source_120x120x120.i33", dtype="<u2").reshape(120, 120, 120)
    striatum = raw == raw.max()
    per_z = striatum.sum((1, 2))
    k = int(np.argmax(per_z))
    assert raw.max() == 1012 and p.info["striatum_value"] == 1012.0
    assert p.info["slice_index"] == k == 60 and p.info["striatum_voxels"] == per_z.max() == 191
    assert per_z[k] > per_z[:k].max() and per_z[k] > per_z[k + 1:].max()
    # [x, y] orientation and the 4-pixel centre pad: label 3 is the raw slice's striatum, transposed.
    assert np.array_equal((lab == 3).numpy()[4:124, 4:124], striatum[k].T)
    assert int((lab > 0).sum()) == int((raw[k] > 0).sum())

    # striatum : background = 6 : 1 (label means), the striatum uniform.
    assert float(a[lab == 3].mean() / a[lab == 1].mean()) == pytest.approx(6.0, abs=1e-6)
    assert float(a[lab == 3].min()) == float(a[lab == 3].max()) == pytest.approx(6.0, abs=1e-6)
    # The background keeps the published contrasts: grey : white = 920 : 230.
    grey = a[torch.from_numpy(np.ascontiguousarray(np.pad(raw[k].T, 4) == 920))]
    white = a[torch.from_numpy(np.ascontiguousarray(np.pad(raw[k].T, 4) == 230))]
    assert float(grey.mean() / white.mean()) == pytest.approx(4.0, rel=1e-6)
    # Attenuation: water in the brain and scalp, bone in the skull, 0 outside, at 140 keV.
    for region in (1, 3):
        assert float((mu[lab == region] - 0.154).abs().max()) < 1e-3
    torch.testing.assert_close(mu[lab == 2], torch.full_like(mu[lab == 2], BONE))
    assert float(mu[lab == 0].abs().max()) == 0 and float(a[lab == 0].abs().max()) == 0
    assert int((lab == 2).sum()) > 300  # a closed skull ring on this slice

    # 208 keV (177Lu) and another ratio; a coarser grid resamples (ratio no longer exact there).
    q = brain_perfusion_slice(folder, ratio=3.0, energy_kev=208.0, background="uniform")
    water_208 = float(q.mu_per_cm[0, 0][q.labels[0, 0] == 1].mean())
    assert water_208 == pytest.approx(mu_per_cm("water", 208.0), rel=1e-5)
    assert sorted(torch.unique(q.activity).tolist()) == [0.0, 1.0, 3.0]
    r = brain_perfusion_slice(folder, grid=VoxelGrid((64, 64), 4.0))
    assert r.activity.shape == (1, 1, 64, 64) and set(torch.unique(r.labels).tolist()) == {0, 1, 2, 3}
