"""CT series (against SimpleITK/GDCM), the bilinear HU→μ model (against NIST values), resampling."""

import numpy as np
import pytest
import torch

from spectdl.errors import InputError
from spectdl.geometry import VoxelGrid
from spectdl.io import (
    break_point_hu,
    ct_attenuation_map,
    ct_to_mu,
    read_ct_series,
    read_projections,
    resample_to_grid,
    voxel_to_patient,
)

sitk = pytest.importorskip("SimpleITK")


def _hu(shape=(6, 5, 4), seed=0):
    return np.random.default_rng(seed).integers(-1000, 1500, size=shape).astype(np.float64)


@pytest.mark.parametrize(
    "row_dir,col_dir",
    [((1, 0, 0), (0, 1, 0)), ((-1, 0, 0), (0, 1, 0)), ((0, 1, 0), (1, 0, 0))],
    ids=["axial", "x-flipped", "swapped-axes"],
)
def test_ct_series_matches_simpleitk(slice_series, row_dir, col_dir):
    hu = _hu()
    folder = slice_series("ct", hu, row_dir=row_dir, col_dir=col_dir)
    vol = read_ct_series(folder)
    assert torch.allclose(vol.data, torch.from_numpy(hu).float())
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    img = reader.Execute()
    ref = sitk.GetArrayFromImage(img).transpose(2, 1, 0)
    assert np.allclose(ref, hu)
    assert np.allclose(vol.affine[:3, 3], img.GetOrigin())
    direction = np.array(img.GetDirection()).reshape(3, 3)
    assert np.allclose(vol.affine[:3, :3], direction * np.array(img.GetSpacing()))
    assert vol.units == "HU" and vol.modality == "CT" and vol.meta["kvp"] == 120.0


def test_ct_padding_becomes_air(slice_series):
    hu = _hu()
    hu[0, 0, :] = -2000 - 1024  # stored value -2000 with intercept -1024
    folder = slice_series("ct", hu, extra={"PixelPaddingValue": -2000})
    assert torch.all(read_ct_series(folder).data[0, 0, :] == -1000.0)


def test_ct_folder_with_non_ct_modality_is_rejected(slice_series):
    folder = slice_series("pt", _hu(), modality="PT", intercept=0.0)
    with pytest.raises(InputError, match=r"Modality \(0008,0060\) is 'PT'; expected 'CT'"):
        read_ct_series(folder)


# ------------------------------------------------------------------ HU -> mu
def test_water_and_air_against_nist():
    # NIST XCOM, water: mu = 0.1536 /cm at 140 keV, 0.1356 /cm at 208 keV (narrow beam)
    assert float(ct_to_mu(torch.tensor(0.0), 140.0, 120)) == pytest.approx(0.1536, rel=0.01)
    assert float(ct_to_mu(torch.tensor(0.0), 208.0, 120)) == pytest.approx(0.1356, rel=0.01)
    assert float(ct_to_mu(torch.tensor(-1000.0), 208.0, 120)) == 0.0
    assert float(ct_to_mu(torch.tensor(-3000.0), 208.0, 120)) == 0.0


def test_bone_end_point_against_nist():
    # NIST XCOM table values (cm^2/g): water 0.1837 and ICRU-44 cortical bone 0.2229 at 80 keV;
    # water 0.1505 and bone 0.1480 at 150 keV; bone density 1.92 g/cm^3.
    hu_bone = 1000.0 * (0.2229 * 1.92 / 0.1837 - 1.0)
    mu = ct_to_mu(torch.tensor([hu_bone], dtype=torch.float64), 150.0, 120, ct_effective_kev=80.0)
    assert float(mu) == pytest.approx(0.1480 * 1.92, rel=1e-3)


def test_bilinear_shape_break_point_and_continuity():
    assert [break_point_hu(k) for k in (80, 120, 140)] == [50.0, 47.0, 30.0]  # Carney et al. 2006
    assert break_point_hu(90) == pytest.approx(51.0)
    bp = break_point_hu(120)
    hu = torch.tensor([bp - 1e-6, bp, bp + 1e-6, -500.0, 0.0], dtype=torch.float64)
    mu = ct_to_mu(hu, 208.0, 120)
    assert float(mu[0]) == pytest.approx(float(mu[2]), abs=1e-9)
    mu_w = float(mu[4])
    assert float(mu[3]) == pytest.approx(0.5 * mu_w, rel=1e-9)  # air-water mix: half water
    # above the break point the slope is smaller at 208 keV (bone attenuates less relative to water)
    hi = ct_to_mu(torch.tensor([500.0, 1000.0], dtype=torch.float64), 208.0, 120)
    assert 0 < float(hi[1] - hi[0]) / 500.0 < mu_w / 1000.0


def test_ct_to_mu_keeps_device_and_dtype_and_takes_arrays():
    out = ct_to_mu(np.array([[0, 100]], dtype=np.int16), 140.0, 120)
    assert out.dtype == torch.float32 and out.shape == (1, 2)
    out64 = ct_to_mu(torch.zeros(3, dtype=torch.float64), 140.0, 120)
    assert out64.dtype == torch.float64


# ------------------------------------------------------------------ resampling
def _affine(origin, spacing, axes=np.eye(3)):
    A = np.eye(4)
    A[:3, :3] = axes * np.asarray(spacing)
    A[:3, 3] = origin
    return A


def test_resample_reproduces_a_linear_field_and_fills_outside():
    shape = (30, 28, 20)
    A = _affine([-30.0, -25.0, -18.0], [2.0, 2.0, 2.0])
    ijk = np.indices(shape).reshape(3, -1).T
    xyz = voxel_to_patient(A, ijk)
    field = (0.5 * xyz[:, 0] - 0.25 * xyz[:, 1] + 0.1 * xyz[:, 2] + 40.0).reshape(shape)
    # target: coarser, axes flipped in x and swapped y/z, partly outside the source
    axes = np.array([[-1.0, 0, 0], [0, 0, 1.0], [0, 1.0, 0]]).T
    target = VoxelGrid((12, 6, 7), (3.0, 3.0, 3.0))
    T = _affine([40.0, -20.0, -12.0], [3.0, 3.0, 3.0], axes)
    out = resample_to_grid(torch.from_numpy(field), A, target, T, fill_value=0.0, antialias=False)
    t_xyz = voxel_to_patient(T, np.indices(target.shape).reshape(3, -1).T)
    expected = 0.5 * t_xyz[:, 0] - 0.25 * t_xyz[:, 1] + 0.1 * t_xyz[:, 2] + 40.0
    lo = A[:3, 3]
    hi = voxel_to_patient(A, np.array(shape) - 1)
    inside = np.all((t_xyz >= lo + 1e-6) & (t_xyz <= hi - 1e-6), axis=1)
    got = out.numpy().reshape(-1)
    assert inside.any() and (~inside).any()
    assert np.allclose(got[inside], expected[inside], atol=1e-3)
    assert np.all(got[~np.all((t_xyz >= lo - 2.0) & (t_xyz <= hi + 2.0), axis=1)] == 0.0)


def test_antialias_keeps_the_mean_of_noise():
    rng = np.random.default_rng(3)
    src = rng.normal(1.0, 1.0, size=(64, 64, 16))
    A = _affine([0, 0, 0], [1.0, 1.0, 4.0])
    target = VoxelGrid((14, 14, 14), (4.0, 4.0, 4.0))
    T = _affine([6.0, 6.0, 4.0], [4.0, 4.0, 4.0])
    smooth = resample_to_grid(torch.from_numpy(src), A, target, T, antialias=True)
    raw = resample_to_grid(torch.from_numpy(src), A, target, T, antialias=False)
    assert float(smooth.mean()) == pytest.approx(1.0, abs=0.05)
    assert float(smooth.std()) < 0.5 * float(raw.std())  # averaging, not aliasing single voxels


def test_ct_attenuation_map_water_cylinder_and_frame_check(slice_series):
    n, nz = 40, 10
    xs = (np.arange(n) - (n - 1) / 2) * 2.0
    xx, yy = np.meshgrid(xs, xs, indexing="ij")
    hu = np.where(xx**2 + yy**2 < 25.0**2, 0.0, -1000.0)[:, :, None].repeat(nz, axis=2)
    folder = slice_series("ct", hu, origin=(-39.0, -39.0, -27.0), spacing=(2.0, 2.0, 6.0), shuffle=False)
    ct = read_ct_series(folder)
    grid = VoxelGrid((16, 16, 8), (6.0, 6.0, 6.0))
    T = _affine([-45.0, -45.0, -33.0], [6.0, 6.0, 6.0])
    mu = ct_attenuation_map(ct, grid, T, 140.0, target_frame_of_reference_uid=ct.frame_of_reference_uid)
    assert mu.shape == (1, 1, 16, 16, 8)
    c = mu[0, 0, 7:9, 7:9, 2:6]
    assert torch.allclose(c, torch.full_like(c, float(ct_to_mu(torch.tensor(0.0), 140.0, 120))), rtol=1e-3)
    assert float(mu[0, 0, 0, 0, 3]) == 0.0  # corner: air inside the CT
    assert float(mu[0, 0, 8, 8, 0]) == 0.0  # slice centred 6 mm beyond the CT's first slice: outside
    with pytest.raises(InputError, match=r"FrameOfReferenceUID \(0020,0052\) is .* but proj.dcm has 9.9"):
        ct_attenuation_map(ct, grid, T, 140.0, target_frame_of_reference_uid="9.9", target_name="proj.dcm")


def test_ct_with_another_frame_of_reference_than_the_spect_is_rejected(slice_series, nm_file):
    folder = slice_series("ct", _hu((24, 24, 4)), for_uid="1.2.3.999")
    acq = read_projections(nm_file())
    ct = read_ct_series(folder)
    with pytest.raises(InputError, match=r"ct.*FrameOfReferenceUID \(0020,0052\) is 1\.2\.3\.999"):
        ct_attenuation_map(ct, acq.grid(), acq.affine, 208.0,
                           target_frame_of_reference_uid=acq.frame_of_reference_uid, target_name=acq.source)


@pytest.mark.shared
def test_real_ct_series(shared_data):
    ct = read_ct_series(shared_data / "real/lu177_spectct/CT")
    assert ct.shape == (512, 512, 303)
    assert ct.spacing_mm == pytest.approx((0.976562, 0.976562, 2.5))
    assert ct.affine[:3, 3] == pytest.approx([-250.0, -250.0, -378.0])  # lowest slice first
    assert ct.meta["kvp"] == 120.0
    acq = read_projections(shared_data / "real/lu177_spectct/bed1_projections.dcm")
    assert ct.frame_of_reference_uid == acq.frame_of_reference_uid  # as the README states
    assert float(ct.data[5, 5, 150]) == pytest.approx(-1000.0, abs=60.0)  # air in the corner


# ------------------------------------------------------------------ mu -> HU (inverse model)
@pytest.mark.parametrize("energy", [140.0, 208.0])
@pytest.mark.parametrize("kvp", [80.0, 120.0, 140.0])
def test_mu_to_ct_hu_inverts_ct_to_mu_for_water_lung_and_bone(energy, kvp):
    from spectdl.io.ct import mu_to_ct_hu
    from spectdl.materials import mu_per_cm

    mu = torch.tensor([mu_per_cm(m, energy) for m in ("water", "lung", "bone")], dtype=torch.float64)
    hu = mu_to_ct_hu(mu, energy, kvp=kvp)
    back = ct_to_mu(hu, energy, kvp)
    assert torch.allclose(back, mu, rtol=1e-5, atol=0.0)
    assert float(hu[0]) == 0.0  # water
    assert -800 < float(hu[1]) < -600  # inflated lung, 0.30 g/cm^3
    assert 1000 < float(hu[2]) < 3071  # cortical bone (about 2900 HU at 80 kVp)


def test_mu_to_ct_hu_round_trip_over_the_model_range_and_break_point():
    from spectdl.io.ct import mu_to_ct_hu

    hu = torch.linspace(-1000.0, 3071.0, 4072, dtype=torch.float64)
    near_bp = [break_point_hu(120) + d for d in (-1e-6, 0.0, 1e-6)]
    hu = torch.cat([hu, torch.tensor(near_bp, dtype=torch.float64)])
    mu = ct_to_mu(hu, 140.0, 120)
    assert torch.allclose(mu_to_ct_hu(mu, 140.0, kvp=120.0), hu, rtol=0.0, atol=1e-6)
    mu2 = torch.linspace(0.0, float(mu.max()), 997, dtype=torch.float64)
    assert torch.allclose(ct_to_mu(mu_to_ct_hu(mu2, 140.0), 140.0, 120), mu2, rtol=1e-9, atol=1e-12)


def test_mu_to_ct_hu_water_air_clamps_dtype_and_nan():
    from spectdl.io.ct import mu_to_ct_hu
    from spectdl.materials import mu_per_cm

    mu_w = mu_per_cm("water", 140.0)
    mu = torch.tensor([mu_w, 0.0, -0.1, 10.0, float("inf")], dtype=torch.float32)
    hu = mu_to_ct_hu(mu, 140.0)
    assert hu.dtype == torch.float32 and hu.shape == mu.shape
    assert hu.tolist() == [0.0, -1000.0, -1000.0, 3071.0, 3071.0]
    assert mu_to_ct_hu(np.array([0, 1]), 140.0).dtype == torch.float32  # integers -> float32
    assert float(mu_to_ct_hu(torch.tensor(mu_w, dtype=torch.float64), 140.0)) == 0.0
    with pytest.raises(InputError, match="mu_per_cm: holds 1 NaN"):
        mu_to_ct_hu(torch.tensor([0.1, float("nan")]), 140.0)
    with pytest.raises(InputError, match="kvp"):
        mu_to_ct_hu(torch.tensor([0.1]), 140.0, kvp=-5)


def test_ct_to_mu_rejects_nan_hu_naming_the_count():
    hu = torch.zeros(4, 5)
    hu[0, :2] = float("nan")
    with pytest.raises(InputError, match=r"hu: contains 2 NaN and 0 infinite value\(s\) out of 20"):
        ct_to_mu(hu, 140.5, 120.0)
    hu[0, :2] = 0.0
    hu[3, 4] = float("inf")
    with pytest.raises(InputError, match=r"hu: contains 0 NaN and 1 infinite"):
        ct_to_mu(hu, 140.5, 120.0)
    # finite HU still convert: water gives water's mu (0 HU -> mu_w > 0, air -1000 HU -> 0)
    mu = ct_to_mu(torch.tensor([0.0, -1000.0]), 140.5, 120.0)
    assert float(mu[1]) == 0.0 and 0.14 < float(mu[0]) < 0.16
