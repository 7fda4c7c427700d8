"""The demo: a complete small fast-bone-SPECT study on built-in simulated data, on the CPU.

1. NEMA IEC phantom acquisitions at standard counts and at 1/7 of them (binomial thinning of the
   standard scan, the exact model of a 7× shorter scan), 60 views, LEHR, attenuation.
2. OSEM reconstruction of both, calibrated to activity concentration (true background = 1).
3. A short training run of the small U²-Net (SPECT + attenuation map in, standard scan out) on
   axial slices, with the lesion-weighted L1 + SSIM loss and deep supervision.
4. Enhancement of held-out 1/7-count scans (other noise and other sphere-to-background ratios).
5. Evaluation against the standard scan: PSNR and SSIM per slice and per volume, SUVmax and SUVmean
   per sphere, and paired Wilcoxon tests.

Everything is written under ``<out_dir>/<run-id>/`` as plain files (config, CSV, JSON, arrays);
:mod:`spectdl.report` turns them into ``report.html``. Nothing here is tuned on the test cases.
"""

from __future__ import annotations

import dataclasses
import io
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from spectdl.errors import InputError
from spectdl.data._util import volume_statistic
from spectdl.geometry import Collimator, Orbit, VoxelGrid
from spectdl.inference import predict_slices
from spectdl.losses.builder import build_loss
from spectdl.metrics.functional import nema_sphere_metrics, psnr, ssim
from spectdl.models import build
from spectdl.noise import poisson, thin
from spectdl.phantoms import nema_iec
from spectdl.physics import SpectProjector
from spectdl.recon import osem
from spectdl.stats.paired import wilcoxon_test
from spectdl.studies._io import atomic_write_bytes, atomic_write_text, new_run_dir, write_json


# The attenuation channel is divided by water's μ at 140 keV so that both input channels are of order 1.
_MU_SCALE_PER_CM = 0.15


@dataclass
class DemoConfig:
    """Every setting of the demo; the defaults run in a few minutes on 2 CPU cores."""

    out_dir: Path = Path("results/demo")
    quick: bool = False
    seed: int = 0
    n_views: int = 60
    radius_mm: float = 260.0
    collimator: str = "LEHR"
    count_fraction: float = 1.0 / 7.0
    standard_counts: float = 1.5e6  # expected total counts of the standard scan, all views
    grid_shape: tuple[int, int, int] = (80, 80, 48)
    voxel_size_mm: float = 4.42
    train_ratios: tuple[float, ...] = (4.0, 6.0, 8.0, 10.0, 12.0, 5.0)
    test_ratios: tuple[float, ...] = (12.0, 7.0, 10.0)
    jitter_mm: float = 8.0
    osem_iters: int = 4
    osem_subsets: int = 10
    model: str = "u2net_small"
    train_steps: int = 200
    batch_size: int = 8
    patch_size: int = 64  # random square training crops (whole slices at inference)
    learning_rate: float = 1e-3
    grad_clip_norm: float = 1.0
    lesion_beta: float = 100.0
    ssim_alpha: float = 0.5
    extra: dict = field(default_factory=dict)

    def effective(self) -> "DemoConfig":
        """The reduced configuration of ``--quick`` (for CI): same steps, tiny sizes."""
        if not self.quick:
            return self
        return dataclasses.replace(
            self,
            grid_shape=(60, 60, 38),
            voxel_size_mm=5.5,
            n_views=30,
            train_ratios=(4.0, 12.0),
            test_ratios=(8.0,),
            osem_iters=2,
            osem_subsets=5,
            train_steps=12,
            batch_size=4,
            patch_size=48,
        )


@dataclass
class DemoResult:
    run_dir: Path
    summary: dict


def _acquire(cfg: DemoConfig, ratio: float, seed: int):
    """One phantom, its standard scan and the thinned 1/7 scan, both reconstructed and calibrated."""
    grid = VoxelGrid(cfg.grid_shape, cfg.voxel_size_mm)
    ph = nema_iec(grid, ratio=ratio, jitter_mm=cfg.jitter_mm, seed=seed)
    P = SpectProjector(grid, Orbit.circular(cfg.n_views, cfg.radius_mm), Collimator.preset(cfg.collimator), ph.mu_per_cm)
    ybar = P(ph.activity)
    ybar = ybar * (cfg.standard_counts / float(ybar.sum()))
    gen = torch.Generator().manual_seed(seed)
    standard = poisson(ybar, gen)
    low = thin(standard, cfg.count_fraction, gen)
    rec_std = osem(standard, P, cfg.osem_iters, cfg.osem_subsets)
    rec_low = osem(low, P, cfg.osem_iters, cfg.osem_subsets)
    # Calibration, as a dose calibrator gives it: the standard scan's counts per unit activity, from
    # the known total activity; the short scan differs from it only by its acquisition time.
    cal = float(ph.activity.sum()) / float(rec_std.sum())
    return ph, rec_std * cal, rec_low * cal / cfg.count_fraction


def _slices(vol: torch.Tensor, mu: torch.Tensor, mask: torch.Tensor, body: torch.Tensor):
    """Axial slices ``[Z, C, X, Y]`` of the slices that contain the body."""
    keep = body[0, 0].sum((0, 1)) > 0
    v = vol[0, 0].permute(2, 0, 1)[keep].unsqueeze(1)
    m = mu[0, 0].permute(2, 0, 1)[keep].unsqueeze(1)
    l = mask[0, 0].permute(2, 0, 1)[keep].unsqueeze(1)
    return v, m, l, keep


def _enhance(model, low: torch.Tensor, mu: torch.Tensor, batch: int = 16) -> torch.Tensor:
    """Slice-wise inference on a volume ``[1, 1, X, Y, Z]``; input normalised by its mean."""
    scale = volume_statistic(low, "mean_positive") or 1.0
    model.eval()
    out = predict_slices(model, torch.cat([low[0] / scale, mu[0] / _MU_SCALE_PER_CM], 0), batch_size=batch, axis=2)
    return out.clamp_min(0)[None] * scale


def _start_from_identity(model) -> None:
    """Zero the side and fusion convolutions of a U²-Net, so that with its long skip the untrained
    network returns its SPECT input unchanged. A short training run then starts from the 1/7-count
    image and learns a correction to it, instead of first undoing a random initial output."""
    for layer in [*model.sides, model.fuse]:
        torch.nn.init.zeros_(layer.weight)
        if layer.bias is not None:
            torch.nn.init.zeros_(layer.bias)


def run_demo(config: DemoConfig) -> DemoResult:
    """Run the whole demo and write its result files; returns the run folder and summary."""
    cfg = config.effective()
    if not 0 < cfg.count_fraction < 1:
        raise InputError(f"count_fraction: expected a value in (0, 1), found {cfg.count_fraction}")
    t_start = time.perf_counter()
    run_dir = new_run_dir(Path(cfg.out_dir), cfg.seed)
    write_json(run_dir / "config.json", dataclasses.asdict(cfg))
    timings = {}

    # 1-2. simulate and reconstruct
    t0 = time.perf_counter()
    train_cases = [_acquire(cfg, r, cfg.seed * 1000 + k) for k, r in enumerate(cfg.train_ratios)]
    test_cases = [_acquire(cfg, r, cfg.seed * 1000 + 500 + k) for k, r in enumerate(cfg.test_ratios)]
    timings["simulate_and_reconstruct_s"] = time.perf_counter() - t0

    # 3. training data: axial slices, input = (1/7 scan, mu map), target = standard scan, all / mean(input)
    xs, ys, ms = [], [], []
    for ph, std, low in train_cases:
        body = (ph.labels > 0)
        lesion = (ph.labels >= 3).float()
        scale = volume_statistic(low, "mean_positive")
        lo, mu, les, keep = _slices(low / scale, ph.mu_per_cm / _MU_SCALE_PER_CM, lesion, body)
        tg = std[0, 0].permute(2, 0, 1)[keep].unsqueeze(1) / scale
        xs.append(torch.cat([lo, mu], 1))
        ys.append(tg)
        ms.append(les)
    x_train, y_train, m_train = torch.cat(xs), torch.cat(ys), torch.cat(ms)

    t0 = time.perf_counter()
    torch_gen = torch.Generator().manual_seed(cfg.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)  # the model's initial weights come from the seed, inside this fork only
        model = build(cfg.model, in_channels=2, out_channels=1)
    _start_from_identity(model)
    base = build_loss("bone_spect", alpha=cfg.ssim_alpha, beta=cfg.lesion_beta, deep_supervision=7)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    history = []
    model.train()
    n = x_train.shape[0]
    for step in range(1, cfg.train_steps + 1):
        idx = torch.randint(0, n, (min(cfg.batch_size, n),), generator=torch_gen)
        xb, yb, mb = x_train[idx], y_train[idx], m_train[idx]
        p = min(cfg.patch_size, xb.shape[-2], xb.shape[-1])
        i0 = int(torch.randint(0, xb.shape[-2] - p + 1, (), generator=torch_gen))
        j0 = int(torch.randint(0, xb.shape[-1] - p + 1, (), generator=torch_gen))
        xb, yb, mb = (t[..., i0 : i0 + p, j0 : j0 + p] for t in (xb, yb, mb))
        if bool(torch.rand((), generator=torch_gen) < 0.5):  # flip augmentation, recorded by the seed
            xb, yb, mb = xb.flip(-1), yb.flip(-1), mb.flip(-1)
        loss = base(model(xb, return_sides=True), yb, lesion_mask=mb)
        if not torch.isfinite(loss):
            raise InputError(f"training: the loss became {float(loss)} at step {step}; lower learning_rate")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip_norm)
        opt.step()
        history.append({"step": step, "loss": float(loss.detach())})
    timings["train_s"] = time.perf_counter() - t0

    # 4-5. enhance the held-out scans and evaluate against the standard scan
    t0 = time.perf_counter()
    slice_rows, volume_rows, sphere_rows = [], [], []
    arrays = {}
    for case, (ph, std, low) in enumerate(test_cases):
        enh = _enhance(model, low, ph.mu_per_cm)
        body = (ph.labels > 0)
        peak = float(std.max())
        for name, img in (("input", low), ("enhanced", enh)):
            volume_rows.append({
                "case": case, "method": name,
                "psnr_db": float(psnr(img, std, peak="reference")),
                "ssim": float(ssim(img, std, data_range=peak)),
            })
        keep = body[0, 0].sum((0, 1)) > 0
        for z in torch.nonzero(keep).flatten().tolist():
            ref = std[..., z]
            row = {"case": case, "slice": z}
            for name, img in (("input", low), ("enhanced", enh)):
                row[f"psnr_{name}_db"] = float(psnr(img[..., z], ref, data_range=peak))
                row[f"ssim_{name}"] = float(ssim(img[..., z], ref, data_range=peak))
            slice_rows.append(row)
        centres = ph.info["sphere_centres_mm"][0].tolist()
        radii = ph.info["sphere_radii_mm"].tolist()
        ratio = float(cfg.test_ratios[case])
        for name, img in (("truth", ph.activity), ("standard", std), ("input", low), ("enhanced", enh)):
            for s in nema_sphere_metrics(img, ph.grid, centres, radii, activity_ratio=ratio):
                sphere_rows.append({
                    "case": case, "ratio": ratio, "method": name, "diameter_mm": s.diameter_mm,
                    "suv_mean": s.suv_mean, "suv_max": s.suv_max,
                })
        zc = int(round(float(ph.info["sphere_centres_mm"][0, 0, 2]) / cfg.voxel_size_mm + (cfg.grid_shape[2] - 1) / 2))
        for name, img in (("input", low), ("enhanced", enh), ("standard", std), ("truth", ph.activity)):
            arrays[f"case{case}_{name}"] = img[0, 0, :, :, zc].numpy()
    timings["evaluate_s"] = time.perf_counter() - t0

    import pandas as pd

    slices_df = pd.DataFrame(slice_rows)
    volumes_df = pd.DataFrame(volume_rows)
    spheres_df = pd.DataFrame(sphere_rows)
    atomic_write_text(run_dir / "metrics_slices.csv", slices_df.to_csv(index=False))
    atomic_write_text(run_dir / "metrics_volumes.csv", volumes_df.to_csv(index=False))
    atomic_write_text(run_dir / "spheres.csv", spheres_df.to_csv(index=False))
    atomic_write_text(run_dir / "training.csv", pd.DataFrame(history).to_csv(index=False))
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(run_dir / "images.npz", buf.getvalue())

    # Paired tests over slices: enhanced vs 1/7-count input, both against the standard scan.
    tests = {}
    for metric in ("psnr", "ssim"):
        a = f"{metric}_enhanced" + ("_db" if metric == "psnr" else "")
        b = f"{metric}_input" + ("_db" if metric == "psnr" else "")
        try:
            r = wilcoxon_test(slices_df, a=a, b=b)
            tests[metric] = {"test": "wilcoxon", "statistic": r.statistic, "p_value": r.p_value,
                             "effect_size": r.effect_size, "estimate": r.estimate, "n": r.n}
        except InputError as exc:
            tests[metric] = {"test": "wilcoxon", "error": str(exc)}
    sph = spheres_df.pivot_table(index=["case", "diameter_mm"], columns="method", values=["suv_mean", "suv_max"])
    suv_err = {}
    for q in ("suv_mean", "suv_max"):
        e_in = (sph[(q, "input")] - sph[(q, "standard")]).abs()
        e_en = (sph[(q, "enhanced")] - sph[(q, "standard")]).abs()
        suv_err[q] = {"mean_abs_error_input": float(e_in.mean()), "mean_abs_error_enhanced": float(e_en.mean())}
    mean_in = float(slices_df["psnr_input_db"].mean())
    mean_en = float(slices_df["psnr_enhanced_db"].mean())
    summary = {
        "n_train_cases": len(train_cases), "n_test_cases": len(test_cases),
        "n_train_slices": int(x_train.shape[0]), "n_test_slices": int(len(slices_df)),
        "psnr_input_db": mean_in, "psnr_enhanced_db": mean_en,
        "ssim_input": float(slices_df["ssim_input"].mean()),
        "ssim_enhanced": float(slices_df["ssim_enhanced"].mean()),
        "tests": tests, "sphere_abs_error_vs_standard": suv_err,
        "enhanced_better_psnr": mean_en > mean_in,
        "final_train_loss": history[-1]["loss"] if history else math.nan,
        "timings_s": timings, "total_s": time.perf_counter() - t_start,
    }
    write_json(run_dir / "summary.json", summary)
    return DemoResult(run_dir, summary)
