"""spectdl against PyTomography on the real Lu-177 SPECT/CT study (needs the ``peer`` extra).

Both reconstruct ``bed1_projections.dcm`` with the same model: 208 keV photopeak, CT attenuation,
MEGP collimator response, TEW scatter from the adjacent windows, OSEM 4 × 10 on the full 128³ grid.
The script prints the voxel-wise Pearson correlation, the relative difference of the mean in a few
volumes of interest (the glands, the head and neck, the thorax, all of the body), and the time of
each reconstruction with their ratio.

PyTomography stores its object with its own axis conventions, which have changed between versions;
its image is brought onto spectdl's grid by the one of the eight axis flips that correlates best
with spectdl's (the script prints which). Each image is also scaled to the same total before the
VOI means are compared, since the two packages may count activity in different units.

Run from the repository root::

    pip install 'spectdl[peer]'
    python benchmarks/bench_real_recon_peer.py [--device cuda] [--iters 4 --subsets 10]

Without PyTomography the script says so and exits with status 2. Not run in this repository's CI:
pytomography is not installed here, so the PyTomography calls follow its 3.x documentation and are
untested.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "real" / "lu177_spectct"


def _example():
    from spectdl.recon import real

    return real


def run_pytomography(file_nm: Path, ct_folder: Path, peak: int, lower: int, upper: int, n_iters: int,
                     n_subsets: int, device: str | None) -> tuple[np.ndarray, float]:
    """PyTomography 3.x OSEM with attenuation, PSF and TEW scatter; returns (object [X, Y, Z], seconds)."""
    import pytomography
    from pytomography.algorithms import OSEM
    from pytomography.io.SPECT import dicom
    from pytomography.likelihoods import PoissonLogLikelihood
    from pytomography.projectors.SPECT import SPECTSystemMatrix
    from pytomography.transforms.SPECT import SPECTAttenuationTransform, SPECTPSFTransform

    if device is not None:
        pytomography.device = torch.device(device)
    files_ct = sorted(str(p) for p in ct_folder.iterdir() if p.is_file())
    object_meta, proj_meta = dicom.get_metadata(str(file_nm), index_peak=peak)
    projections = dicom.get_projections(str(file_nm))
    photopeak = projections[peak]
    if hasattr(dicom, "get_energy_window_scatter_estimate"):
        scatter = dicom.get_energy_window_scatter_estimate(str(file_nm), projections, peak, lower, upper)
    else:
        scatter = dicom.get_scatter_from_TEW(str(file_nm), peak, lower, upper)
    mu = dicom.get_attenuation_map_from_CT_slices(files_ct, str(file_nm), index_peak=peak)
    psf_meta = dicom.get_psfmeta_from_scanner_params("GI-MEGP", energy_keV=208.0)
    system = SPECTSystemMatrix(
        obj2obj_transforms=[SPECTAttenuationTransform(mu), SPECTPSFTransform(psf_meta)],
        proj2proj_transforms=[],
        object_meta=object_meta,
        proj_meta=proj_meta,
    )
    likelihood = PoissonLogLikelihood(system, photopeak, additive_term=scatter)
    t0 = time.perf_counter()
    recon = OSEM(likelihood)(n_iters=n_iters, n_subsets=n_subsets)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    return recon.detach().cpu().numpy().reshape(recon.shape[-3:]).astype(np.float64), seconds


def best_flip(moving: np.ndarray, fixed: np.ndarray) -> tuple[np.ndarray, tuple[bool, bool, bool], float]:
    """The axis flip of ``moving`` (same shape) with the highest Pearson correlation to ``fixed``."""
    best = None
    for flips in itertools.product((False, True), repeat=3):
        m = moving
        for axis, f in enumerate(flips):
            if f:
                m = np.flip(m, axis)
        r = float(np.corrcoef(m.ravel(), fixed.ravel())[0, 1])
        if best is None or r > best[2]:
            best = (np.ascontiguousarray(m), flips, r)
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--projections", type=Path, default=DATA / "bed1_projections.dcm")
    ap.add_argument("--ct", type=Path, default=DATA / "CT")
    ap.add_argument("--iters", type=int, default=4)
    ap.add_argument("--subsets", type=int, default=10)
    ap.add_argument("--device", default=None)
    args = ap.parse_args(argv)

    if importlib.util.find_spec("pytomography") is None:
        print("PyTomography is not installed; install the peer extra (pip install 'spectdl[peer]') "
              "to run this comparison.", file=sys.stderr)
        return 2
    if not args.projections.is_file() or not args.ct.is_dir():
        print(f"data not found: {args.projections} and {args.ct} (see ../shared/data/README.md)",
              file=sys.stderr)
        return 2

    from scipy import ndimage

    from spectdl.io import read_ct_series, read_projections, resample_to_grid

    acq = read_projections(args.projections)
    ct = read_ct_series(args.ct)
    peak = acq.window_index(208.0)
    lower, upper = acq.tew_windows(peak)
    ex = _example()
    ours = ex.reconstruct_acquisition(acq, ct, n_iters=args.iters, n_subsets=args.subsets, axial_crop=None,
                                      scatter_smooth_sigma_px=None, device=args.device)
    x_s = ours.volume.data.numpy().astype(np.float64)
    x_p, t_p = run_pytomography(args.projections, args.ct, peak, lower, upper, args.iters, args.subsets,
                                args.device)
    if x_p.shape != x_s.shape:
        print(f"shape mismatch: PyTomography {x_p.shape}, spectdl {x_s.shape}", file=sys.stderr)
        return 1
    x_p, flips, r = best_flip(x_p, x_s)

    grid = ours.acquisition.grid()
    hu = resample_to_grid(ct.data, ct.affine, grid, ours.volume.affine, fill_value=-1000.0).numpy()
    body = ndimage.binary_fill_holes(hu > -500.0)
    width = body.any(axis=1).sum(axis=0)
    head_neck = np.zeros_like(body)
    head_neck[:, :, width < 0.6 * width.max()] = True
    smooth = ndimage.gaussian_filter(x_s, 1.0)
    vois = {
        "glands (>40 % max, head/neck)": (smooth > 0.4 * smooth[head_neck & body].max()) & head_neck & body,
        "head and neck": head_neck & body,
        "thorax": ~head_neck & body,
        "body": body,
    }
    a_s, a_p = x_s / x_s[body].sum(), x_p / x_p[body].sum()
    print(f"grid {x_s.shape}, OSEM {args.iters}×{args.subsets}; PyTomography axis flips applied: {flips}")
    print(f"ratio of totals in the body (PyTomography / spectdl): {x_p[body].sum() / x_s[body].sum():.4f}")
    print(f"voxel-wise Pearson correlation in the body: {np.corrcoef(x_p[body], x_s[body])[0, 1]:.4f} "
          f"(whole grid {r:.4f})")
    print(f"{'VOI':32s} {'voxels':>8s} {'rel. diff of mean (normalised)':>32s}")
    for name, m in vois.items():
        ms, mp = a_s[m].mean(), a_p[m].mean()
        print(f"{name:32s} {int(m.sum()):8d} {100 * (mp - ms) / ms:+31.2f} %")
    print(f"time: spectdl {ours.seconds:.1f} s, PyTomography {t_p:.1f} s, ratio {t_p / ours.seconds:.2f}× "
          f"(PyTomography / spectdl)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
