"""Figures of reconstructed volumes: SPECT slices alone and over the CT."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spectdl.io import Volume, resample_to_grid


def recon_slices_figure(recon, ct: Volume, path: Path) -> Path:
    """Coronal and axial slices through the hottest voxel, alone and over the CT (matplotlib, Agg)."""
    from matplotlib.figure import Figure

    x = recon.volume.data.numpy()
    grid = recon.acquisition.grid()
    hu = resample_to_grid(ct.data, ct.affine, grid, recon.volume.affine, fill_value=-1000.0).numpy()
    i, j, k = np.unravel_index(int(np.argmax(x)), x.shape)
    sx, sy, sz = recon.volume.spacing_mm
    vmax = float(np.percentile(x, 99.9))
    fig = Figure(figsize=(10, 8), layout="constrained")
    axes = fig.subplots(2, 2)
    # coronal: x (patient left) to the right, z (head) up; axial: x to the right, y (posterior) down
    views = [
        (x[:, j, :].T, hu[:, j, :].T, dict(origin="lower", aspect=sz / sx), f"coronal y={j}"),
        (x[:, :, k].T, hu[:, :, k].T, dict(origin="upper", aspect=sy / sx), f"axial z={k}"),
    ]
    for row, (img, ct_img, kw, title) in enumerate(views):
        axes[row, 0].imshow(img, cmap="hot", vmin=0, vmax=vmax, **kw)
        axes[row, 0].set_title(f"SPECT {title} (patient's left on the right)")
        axes[row, 1].imshow(ct_img, cmap="gray", vmin=-400, vmax=600, **kw)
        hot = np.ma.masked_less(img, 0.1 * vmax)
        axes[row, 1].imshow(hot, cmap="hot", vmin=0, vmax=vmax, alpha=0.6, **kw)
        axes[row, 1].set_title(f"SPECT over CT, {title}")
        for ax in axes[row]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.savefig(path, dpi=100)
    return path
