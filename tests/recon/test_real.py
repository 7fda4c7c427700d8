"""The real-data check of the io issue: reconstruct the Lu-177 SPECT/CT study and test it against its CT.

Runs ``spectdl.recon.real.reconstruct_acquisition`` (as the example does) on ``bed1_projections.dcm`` with
the CT (attenuation at 208 keV), the MEGP response and TEW scatter, OSEM 4 × 10, on detector pixels
rebinned 2 × 2 (8.84 mm voxels) and cropped to the axial rows that hold counts, to stay near 30 s.

Checks (the data README: bed 1 covers head, neck and upper thorax; the salivary glands are the hottest
structures):

1. registration: the SPECT body outline (Gaussian-smoothed image above 5 % of its 99.9th percentile)
   lies in the CT body (HU > −500, dilated by one voxel) for ≥ 90 % of its voxels, and ≥ 90 % of the
   reconstructed activity lies inside the CT body; the six hottest local maxima lie inside the CT
   body eroded by one voxel. (A y-flip of the same image gives about 50 %; a 3 cm shift about 85 %.)
2. the hottest structures are the glands: the two hottest local maxima sit in the head and neck
   (slices where the CT body is narrower than 60 % of its widest, i.e. above the shoulders), and the
   maximum there exceeds the maximum over the thorax.
3. left-right: in the lowest slices (z < 15 mm, the dome of the liver in this patient) the activity
   centroid lies on the patient's right (smaller x) of the CT body centre.
4. counts: the forward projection of the reconstruction plus the scatter estimate reproduces the
   measured photopeak counts within 3 % (ML-EM keeps Σ(Ax + s) close to Σy).
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from spectdl.io import read_ct_series, read_projections, resample_to_grid
from spectdl.recon.real import reconstruct_acquisition



@pytest.mark.slow
@pytest.mark.shared
def test_real_reconstruction_is_registered_and_consistent(shared_data):
    folder = shared_data / "real/lu177_spectct"
    acq = read_projections(folder / "bed1_projections.dcm")
    ct = read_ct_series(folder / "CT")
    recon = reconstruct_acquisition(acq, ct, n_iters=4, n_subsets=10, rebin=2)
    x = recon.volume.data.numpy().astype(np.float64)
    grid, A = recon.acquisition.grid(), recon.volume.affine
    hu = resample_to_grid(ct.data, ct.affine, grid, A, fill_value=-1000.0).numpy()
    body = ndimage.binary_fill_holes(hu > -500.0)

    # 1. registration
    smooth = ndimage.gaussian_filter(x, 1.0)
    outline = ndimage.binary_fill_holes(smooth > 0.05 * np.percentile(smooth, 99.9))
    assert (outline & ndimage.binary_dilation(body)).sum() / outline.sum() >= 0.90
    assert x[body].sum() / x.sum() >= 0.90
    is_peak = (smooth == ndimage.maximum_filter(smooth, size=5)) & (smooth > 0.3 * smooth.max())
    peaks = np.argwhere(is_peak)
    peaks = peaks[np.argsort(-smooth[is_peak])][:6]
    inner = ndimage.binary_erosion(body)
    assert all(inner[tuple(p)] for p in peaks), peaks

    # 2. the glands are the hottest structures, in the head and neck
    width = body.any(axis=1).sum(axis=0)  # body width along x of each axial slice
    head_neck = width < 0.6 * width.max()
    assert head_neck.any() and (~head_neck).any()
    assert all(head_neck[p[2]] for p in peaks[:2]), peaks[:2]
    assert smooth[:, :, head_neck].max() > smooth[:, :, ~head_neck].max()

    # 3. left-right: the liver dome is on the patient's right (-x)
    z = A[2, 3] + A[2, 2] * np.arange(x.shape[2])
    low = np.nonzero(z < 15.0)[0]
    assert low.size >= 2
    xi = np.arange(x.shape[0])
    act = x[:, :, low].sum(axis=(1, 2))
    tissue = body[:, :, low].sum(axis=(1, 2))
    assert (act * xi).sum() / act.sum() < (tissue * xi).sum() / tissue.sum() - 1.0

    # 4. counts
    with torch.no_grad():
        ybar = recon.projector(recon.volume.as_batch().to(recon.measured)) + recon.scatter
    measured = float(recon.measured.sum())
    assert measured == pytest.approx(1.39e6, rel=0.01)
    assert float(ybar.sum()) == pytest.approx(measured, rel=0.03)


def _synthetic_acquisition():
    """A 24×24×6 water cylinder with a hot rod, projected with its own μ (MEGP, 60 views), and its CT."""
    from spectdl.geometry import Collimator, Orbit, VoxelGrid
    from spectdl.io import Acquisition, Volume
    from spectdl.io.ct import ct_attenuation_map
    from spectdl.physics import SpectProjector

    n, nz, px = 24, 6, 8.0
    affine = np.diag([px, px, px, 1.0])
    yy, xx = np.mgrid[:n, :n] - (n - 1) / 2
    hu = np.where(yy**2 + xx**2 < 9.0**2, 0.0, -1000.0)
    ct = Volume(torch.tensor(np.repeat(hu[:, :, None], nz, 2), dtype=torch.float32), affine, "CT", "HU",
                meta={"kvp": 120.0})
    x = torch.tensor(np.repeat(((yy - 3) ** 2 + xx**2 < 9.0)[:, :, None] * 4.0 + (hu == 0)[:, :, None], nz, 2),
                     dtype=torch.float32)[None, None]
    grid = VoxelGrid((n, n, nz), (px, px, px))
    orbit = Orbit(tuple(np.arange(60) * 6.0), 200.0)
    mu = ct_attenuation_map(ct, grid, affine, 208.0)
    y = SpectProjector(grid, orbit, Collimator.preset("MEGP"), mu).A(x)[0, 0]
    acq = Acquisition(y[None] * 50.0, [(187.2, 228.8)], ["peak"], orbit, px, px, None, None, affine, None, None)
    return acq, ct


# The float32 cache of this case is 60 views × 3456 voxels × 4 B = 0.79 MB; float16 takes half (11 bits of
# mantissa: about 5e-4 relative per factor).
@pytest.mark.parametrize("budget_mb, over, storage, rtol", [(2048.0, "half", "full", 1e-5), (0.6, "half", "half", 2e-3),
                                                            (0.6, "recompute", "recompute", 1e-5),
                                                            (0.0, "half", "recompute", 1e-5)])
def test_the_attenuation_budget_reaches_the_projector_and_keeps_the_image(budget_mb, over, storage, rtol):
    acq, ct = _synthetic_acquisition()
    ref = reconstruct_acquisition(acq, ct, n_iters=2, n_subsets=6, scatter=False, axial_crop=None)
    got = reconstruct_acquisition(acq, ct, n_iters=2, n_subsets=6, scatter=False, axial_crop=None,
                                  attenuation_cache_mb=budget_mb, over_budget=over)
    assert got.projector.attenuation_storage() == storage
    assert ref.projector.attenuation_storage() == "full"
    torch.testing.assert_close(got.volume.data, ref.volume.data, rtol=rtol, atol=rtol * float(ref.volume.data.max()))
    # the images are not trivially equal: two OSEM iterations put the rod well above the background
    v = ref.volume.data
    assert float(v[12 + 3, 12].mean()) > 2.0 * float(v[12 - 6, 12].mean())
