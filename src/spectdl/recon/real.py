"""Reconstruction of a real acquisition: one photopeak with CT attenuation, collimator response and
triple-energy-window scatter, from the readers of :mod:`spectdl.io` to OSEM."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from spectdl.geometry import Collimator
from spectdl.io import Acquisition, Volume, ct_attenuation_map, read_ct_series, tew_scatter
from spectdl.physics import SpectProjector
from spectdl.recon.osem import osem


@dataclass
class Reconstruction:
    """What :func:`reconstruct_acquisition` returns.

    Attributes:
        volume: the OSEM image as a :class:`Volume` (``data [X, Y, Z]``, affine to patient LPS).
            Units: counts per view (``A x`` is the expected counts of one view at one angle).
        acquisition: the acquisition actually reconstructed (after axial cropping and rebinning).
        measured: photopeak counts ``[1, 1, n_angles, n_radial, n_axial]``.
        scatter: TEW scatter estimate, same shape.
        mu: μ map at the photopeak energy, ``[1, 1, *grid]`` in cm⁻¹.
        projector: the system model (to forward-project the result).
        seconds: wall time of the OSEM iterations.
    """

    volume: Volume
    acquisition: Acquisition
    measured: torch.Tensor
    scatter: torch.Tensor
    mu: torch.Tensor
    projector: SpectProjector
    seconds: float


def reconstruct_acquisition(
    acq: Acquisition,
    ct: Volume | str | Path | None,
    *,
    energy_kev: float = 208.0,
    n_iters: int = 4,
    n_subsets: int = 10,
    collimator: str | Collimator | None = "MEGP",
    scatter: bool = True,
    scatter_smooth_sigma_px: float | None = 1.0,
    rebin: int = 1,
    axial_crop: str | tuple[int, int] | None = "auto",
    attenuation_cache_mb: float = 2048.0,
    over_budget: str = "half",
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> Reconstruction:
    """OSEM reconstruction of one photopeak with CT attenuation, collimator response and TEW scatter.

    Args:
        acq: projections from :func:`spectdl.io.read_projections`.
        ct: CT :class:`Volume` (HU), a CT folder, or ``None`` for no attenuation correction.
        energy_kev: photon energy; picks the window that contains it and sets μ.
        n_iters, n_subsets: OSEM iterations and subsets.
        collimator: preset name, a :class:`Collimator`, or ``None`` for ideal line integrals.
        scatter: add the TEW estimate from the windows adjacent to the photopeak.
        scatter_smooth_sigma_px: Gaussian smoothing of the scatter estimate (pixels), or ``None``.
        rebin: sum ``rebin × rebin`` detector pixels first (faster, coarser).
        axial_crop: ``"auto"`` keeps the axial rows that hold counts (the detector's useful
            field of view), a ``(start, stop)`` range, or ``None`` for all rows.
        attenuation_cache_mb, over_budget: the projector's memory budget for the attenuation
            factors (n_views · n voxels floats) and what to do above it: ``"half"`` keeps them in
            float16, ``"recompute"`` computes them per view (see :class:`SpectProjector`).
            A 256×256×200 acquisition with 120 views needs 6.3 GB in float32.
        device, dtype: where and in what precision to compute.
    """
    peak = acq.window_index(energy_kev)
    if axial_crop == "auto":
        prof = acq.counts(peak).sum((0, 1))
        rows = torch.nonzero(prof > 0.02 * float(prof.max())).flatten()
        k0, k1 = int(rows[0]), int(rows[-1]) + 1
    elif axial_crop is None:
        k0, k1 = 0, acq.shape[2]
    else:
        k0, k1 = (int(v) for v in axial_crop)
    if rebin > 1:  # the rebinned length must divide: widen the crop to a multiple of rebin
        k1 = min(k0 + -(-(k1 - k0) // rebin) * rebin, acq.shape[2])
        k0 = k1 - ((k1 - k0) // rebin) * rebin
    acq = acq.crop_axial(k0, k1).rebin(rebin)
    grid = acq.grid()
    dev = torch.device(device) if device is not None else torch.device("cpu")

    y = acq.counts(peak)[None, None].to(dev, dtype)
    s = None
    if scatter:
        lower, upper = acq.tew_windows(peak)
        widths = (acq.window_width_kev(peak), acq.window_width_kev(lower), acq.window_width_kev(upper))
        s = tew_scatter(acq.counts(peak), acq.counts(lower), acq.counts(upper), widths,
                        smooth_sigma_px=scatter_smooth_sigma_px)[None, None].to(dev, dtype)
    mu = None
    if ct is not None:
        ct_vol = ct if isinstance(ct, Volume) else read_ct_series(ct)
        mu = ct_attenuation_map(ct_vol, grid, acq.affine, energy_kev,
                                target_frame_of_reference_uid=acq.frame_of_reference_uid,
                                target_name=acq.source).to(dev, dtype)
    coll = Collimator.preset(collimator) if isinstance(collimator, str) else collimator
    P = SpectProjector(grid, acq.orbit, coll, mu, attenuation_cache_mb=attenuation_cache_mb,
                        over_budget=over_budget)
    t0 = time.perf_counter()
    x = osem(y, P, n_iters, n_subsets, additive=s)
    seconds = time.perf_counter() - t0
    vol = Volume(
        data=x[0, 0].cpu(),
        affine=acq.affine,
        modality="NM",
        units=None,
        frame_of_reference_uid=acq.frame_of_reference_uid,
        study_instance_uid=acq.study_instance_uid,
        source=(acq.source,),
        identity=dict(acq.identity),
        meta=dict(energy_kev=energy_kev, n_iters=n_iters, n_subsets=n_subsets, axial_crop=(k0, k1),
                  rebin=rebin),
    )
    return Reconstruction(vol, acq, y, s if s is not None else torch.zeros_like(y), mu if mu is not None
                          else torch.zeros((1, 1) + grid.shape, device=dev, dtype=dtype), P, seconds)
