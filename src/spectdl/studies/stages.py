"""The stage functions every study chains: simulate, reconstruct, train, predict, score.

Each takes the stage folder first (``Run.stage`` passes it), writes only inside it, can be re-run
from the start after a kill (simulations are overwritten, training resumes from its own last
checkpoint, predictions are rewritten), and returns a small JSON-able record of what it made.
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from spectdl.errors import InputError
from spectdl.io.atomic import atomic_write


# --------------------------------------------------------------------------------------------------
# Simulation and reconstruction


def simulate_sets(folder: Path, configs: Mapping[str, Any], *, workers: int = 1) -> dict[str, str]:
    """``spectdl.data.simulate`` of every named config into ``folder/<name>``; their manifests."""
    from spectdl.data import simulate

    out = {}
    for name, cfg in configs.items():
        res = simulate(cfg, folder / name, workers=workers, progress=False, overwrite=True)
        out[name] = str(res.manifest_path)
    return out


def reconstruct_sets(folder: Path, manifests: Mapping[str, str], recon: Any, *, workers: int = 1) -> dict[str, str]:
    """OSEM of every simulation (:func:`spectdl.data.reconstruct_simulation`) into ``folder/<name>``."""
    from spectdl.data.simulation import reconstruct_simulation

    out = {}
    for name, manifest in manifests.items():
        res = reconstruct_simulation(manifest, folder / name, recon, workers=workers, progress=False, overwrite=True)
        out[name] = str(res.manifest_path)
    return out


# --------------------------------------------------------------------------------------------------
# Cases: the test volumes of a simulation or of a manifest of real cases


@dataclass
class CaseSet:
    """The cases of one split as volumes ``[C, *spatial]``, by case id and key.

    ``keys`` maps the study's names (``input``, ``target``, ``ct``, ``truth``, ``labels``, ...) to
    stored simulation keys or manifest columns. ``info`` holds per-case extras (NEMA sphere centres, ...).
    """

    ids: list[str]
    volumes: dict[str, dict[str, torch.Tensor]]
    info: dict[str, dict[str, Any]] = field(default_factory=dict)
    grid: Any = None

    def get(self, case: str, key: str) -> torch.Tensor:
        try:
            return self.volumes[case][key]
        except KeyError:
            raise InputError(f"case {case}: no {key!r}; available {sorted(self.volumes.get(case, {}))}") from None

    def stack(self, case: str, keys: Sequence[str]) -> torch.Tensor:
        return torch.cat([self.get(case, k) for k in keys], 0)

    def by_case(self, key: str) -> dict[str, torch.Tensor]:
        return {c: self.get(c, key) for c in self.ids}

    def add_scaled(self, name: str, key: str, factor: float) -> None:
        """Add ``name`` = ``key`` × ``factor`` to every case (e.g. a low dose scaled by ``1/f``)."""
        for c in self.ids:
            self.volumes[c][name] = self.get(c, key) * float(factor)

    def voxel_size_mm(self) -> float:
        """The (first) voxel size of the cases' grid; 1 when unknown (real cases without a grid)."""
        return float(self.grid.voxel_size_mm[0]) if self.grid is not None else 1.0


def simulated_cases(manifest: str | Path, split: str, keys: Mapping[str, str], *, prefix: str = "") -> CaseSet:
    """The ``split`` samples of a simulation as a :class:`CaseSet` (case ids ``<prefix><index>``),
    with each sample's manifest record (seeds, scalar phantom parameters) in ``info``."""
    from spectdl.data import SimulatedDataset
    from spectdl.data.config import SimulationConfig
    from spectdl.data.simulation import load_manifest_json

    ds = SimulatedDataset(manifest, split=split, keys=(*keys.values(), "index"))
    m = load_manifest_json(manifest)
    records = m["samples"]
    ids, volumes, info = [], {}, {}
    for i in range(len(ds)):
        s = ds[i]
        cid = f"{prefix}{int(s['index']):05d}"
        ids.append(cid)
        volumes[cid] = {name: s[stored].float() for name, stored in keys.items()}
        info[cid] = records[int(s["index"])]
    ds.close()
    # The stored volumes' grid: the field of view's when the simulation has one.
    return CaseSet(ids, volumes, info, SimulationConfig.from_dict(m["config"]).data_grid())


def manifest_cases(manifest: str | Path, split: str, columns: Mapping[str, str]) -> CaseSet:
    """The ``split`` cases of a manifest of real cases (``columns``: study name -> manifest column)."""
    from spectdl.data import load_manifest, read_case_image

    m = load_manifest(manifest)
    ids, volumes = [], {}
    for case in m.split(split):
        ids.append(case.case_id)
        volumes[case.case_id] = {
            name: read_case_image(case.paths[col], col).float()[None]
            for name, col in columns.items() if col in case.paths
        }
    return CaseSet(ids, volumes)


# --------------------------------------------------------------------------------------------------
# Training and prediction


def train_methods(folder: Path, methods: Mapping[str, Any], data: Callable[[str], tuple[Any, Any]]) -> dict[str, dict]:
    """``spectdl.training.fit`` of every method's config into ``folder/<method>`` (resuming a killed
    run from its last checkpoint), in order (a method may start from an earlier one's checkpoint);
    ``data(method) -> (train_dataset, val_dataset)``."""
    from spectdl.training import fit

    out = {}
    for name, cfg in methods.items():
        train, val = data(name)
        with warnings.catch_warnings(), _quiet("lightning.pytorch", "lightning.fabric"):
            warnings.filterwarnings("ignore", message=r"resume: no checkpoint")
            warnings.filterwarnings("ignore", category=UserWarning, module=r"lightning.*")
            warnings.filterwarnings("ignore", message=r".*treespec.*")
            res = fit(cfg, train, val, folder / name, resume=True)
        history = folder / name / "history.csv"
        if res.history:
            import pandas as pd

            text = pd.DataFrame(res.history).to_csv(index=False)
            atomic_write(history, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"), overwrite=True)
        out[name] = {
            "checkpoint": str(res.best_checkpoint or res.last_checkpoint),
            "epochs": res.epochs_completed, "best_epoch": res.best_epoch, "best_score": res.best_score,
            "history": str(history) if res.history else None,
            # Two-stage runs: each stage's own best checkpoint (e.g. SPECTnet before fine-tuning).
            "stages": [str(r.best_checkpoint or r.last_checkpoint) for r in res.stages],
        }
    return out


@contextlib.contextmanager
def _quiet(*loggers: str):
    """Lightning's start-up notices (GPU available, tips) at WARNING level for the block only."""
    import logging

    import lightning  # noqa: F401  (it sets its loggers' levels on import; set ours after that)

    saved = [(logging.getLogger(n), logging.getLogger(n).level) for n in loggers]
    for lg, _ in saved:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in saved:
            lg.setLevel(level)


def save_volumes(path: Path, volumes: Mapping[str, torch.Tensor]) -> Path:
    """``{name: volume}`` as one compressed ``.npz`` (float32), written atomically."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: v.detach().cpu().float().numpy() for k, v in volumes.items()})
    data = buf.getvalue()
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data), overwrite=True)


def load_volumes(path: str | Path) -> dict[str, torch.Tensor]:
    with np.load(path) as z:
        return {k: torch.from_numpy(z[k]) for k in z.files}


def predict_methods(folder: Path, checkpoints: Mapping[str, str], cases: CaseSet,
                    channels: Mapping[str, Sequence[str]], *, device: str = "cpu", batch_size: int = 8) -> dict[str, str]:
    """Every method's prediction of every case (``spectdl.inference.enhance_volume`` with the
    normalisation its checkpoint records), one ``folder/<method>.npz`` per method.
    ``channels[method]``: the case keys stacked as that method's input."""
    from spectdl.inference import enhance_volume
    from spectdl.training import load_model_from_checkpoint

    out = {}
    for name, ckpt in checkpoints.items():
        model, meta = load_model_from_checkpoint(ckpt, map_location=device)
        with torch.no_grad():
            preds = {c: enhance_volume(model, cases.stack(c, channels[name]), meta=meta, batch_size=batch_size,
                                       device=device).cpu() for c in cases.ids}
        out[name] = str(save_volumes(folder / f"{name}.npz", preds))
    return out


def load_predictions(paths: Mapping[str, str]) -> dict[str, dict[str, torch.Tensor]]:
    """``{method: {case: volume}}`` from :func:`predict_methods`' files."""
    return {m: load_volumes(p) for m, p in paths.items()}


# --------------------------------------------------------------------------------------------------
# Scoring


def score_methods(images: Mapping[str, Mapping[str, torch.Tensor]], references: Mapping[str, torch.Tensor], *,
                  metrics: Sequence[str], convention: str, masks: Mapping[str, Mapping[str, Any]] | None = None,
                  spatial_dims: int | None = None, **columns: Any) -> list[dict[str, Any]]:
    """Long metric rows of every method's images against the references (one scorer:
    :func:`spectdl.metrics.scoring.score_cases`). ``masks``: ``{region: {case: mask}}``; a region
    may cover only some cases (e.g. the cases with lesions). ``spatial_dims=2`` scores ``[1, V, R, Z]``
    projections as ``V`` channels of 2-D images (SSIM per view, averaged; one peak over all views).
    ``columns`` are added to every row."""
    from spectdl.metrics.scoring import score_cases

    rows = []
    for region, by_case in (masks or {None: None}).items():
        for method, imgs in images.items():
            cases = list(imgs) if by_case is None else [c for c in imgs if c in by_case]
            if not cases:
                continue
            for r in score_cases({c: imgs[c] for c in cases}, {c: references[c] for c in cases}, metrics=metrics,
                                 convention=convention, masks=None if by_case is None else {c: by_case[c] for c in cases},
                                 method=method, spatial_dims=spatial_dims):
                rows.append({**r, **({"region": region} if region is not None else {}), **columns})
    return rows


def _voxel(grid, point_mm: Sequence[float]) -> tuple[int, ...]:
    return tuple(int(round(float(p) / s + (n - 1) / 2)) for p, s, n in zip(point_mm, grid.voxel_size_mm, grid.shape))


def nema_rows(images: Mapping[str, Mapping[str, torch.Tensor]], phantoms: Mapping[str, Any], *,
              reference: str = "reference", cnr_threshold: float = 5.0, **columns: Any) -> list[dict[str, Any]]:
    """Per-sphere SUVmax and SUVmean of every method's NEMA images, their absolute errors against
    ``reference``, the contrast-to-noise ratio of each sphere and the number of spheres with
    ``CNR > cnr_threshold`` (``visible_spheres``).

    ``phantoms[case]`` is the case's :class:`~spectdl.phantoms.Phantom` (sphere centres, labels,
    grid). CNR_j = (C_H,j − C_B,j) / SD_j, with C_B,j and SD_j the mean and sample SD of the means
    of background balls of the sphere's size placed in the background water (NEMA NU 2), so it is
    the contrast of the sphere over the ROI-to-ROI noise at that size (Rose criterion at 5).
    Images are calibrated so that the background is 1: SUV here is activity over background.
    """
    from spectdl.metrics.functional import nema_sphere_metrics, sphere_mask

    rows: list[dict[str, Any]] = []
    for case, ph in phantoms.items():
        # A sphere smaller than the voxels may hold no voxel centre on a coarse grid: it is left out.
        spheres = [(c, r) for c, r in zip(ph.info["sphere_centres_mm"][0].tolist(), ph.info["sphere_radii_mm"].tolist())
                   if bool(sphere_mask(ph.grid, c, r).any())]
        centres, radii = [c for c, _ in spheres], [r for _, r in spheres]
        background = ph.labels[0, 0] == ph.label_names["background"]
        per_method = {}
        for method, by_case in images.items():
            per_method[method] = nema_sphere_metrics(by_case[case], ph.grid, centres, radii, background_mask=background,
                                                     max_background_rois=24)
        for method, spheres in per_method.items():
            visible = 0
            for s, ref in zip(spheres, per_method[reference]):
                region = f"sphere{round(s.diameter_mm)}"
                cnr = (s.suv_mean - s.background_mean) / s.background_sd if s.background_sd else float("nan")
                visible += int(cnr > cnr_threshold)
                for metric, value in (("suv_max", s.suv_max), ("suv_mean", s.suv_mean), ("cnr", cnr),
                                      ("suv_max_abs_error", abs(s.suv_max - ref.suv_max)),
                                      ("suv_mean_abs_error", abs(s.suv_mean - ref.suv_mean))):
                    rows.append({"case": case, "method": method, "metric": metric, "value": float(value),
                                 "region": region, **columns})
            rows.append({"case": case, "method": method, "metric": "visible_spheres", "value": float(visible),
                         "region": "all_spheres", **columns})
    return rows


def lesion_patches(present_images: Mapping[str, Mapping[str, torch.Tensor]],
                   absent_images: Mapping[str, Mapping[str, torch.Tensor]], phantoms: Mapping[str, Any],
                   twins: Mapping[str, str], *, size: int) -> tuple[dict[str, list], dict[str, list]]:
    """Axial patches (``size`` px) centred on every hot lesion of each case (signal present; the
    phantom's ``info["lesion_centre_mm"]`` and ``info["lesion_hot"]``) and at the same places in the
    case's lesion-free twin ``twins[case]`` (signal absent): the same anatomy, another noise
    realisation, so that the observer's task is the lesion and not the background's variety."""
    from spectdl.metrics.observer import extract_patches

    present: dict[str, list] = {}
    absent: dict[str, list] = {}
    half = size // 2
    for case, ph in phantoms.items():
        shape = ph.labels.shape[-3:]
        hot = ph.info.get("lesion_hot")
        if hot is None:
            continue
        centres = [_voxel(ph.grid, c) for c, h in zip(ph.info["lesion_centre_mm"][0].tolist(), hot[0].tolist())
                   if h and all(np.isfinite(c))]
        centres = [c for c in centres if all(half <= c[k] < shape[k] - half for k in (0, 1))]
        for method in present_images:
            for images, out, cid in ((present_images, present, case), (absent_images, absent, twins[case])):
                vol = images[method][cid].reshape(shape)
                for c in centres:
                    out.setdefault(method, []).append(extract_patches(vol[..., c[2]], [c[:2]], size)[0])
    return present, absent


def _dilate(mask: torch.Tensor, size: int) -> torch.Tensor:
    k = 2 * (size // 2) + 1
    x = mask[None, None].float()
    return torch.nn.functional.max_pool3d(x, k, stride=1, padding=k // 2)[0, 0] > 0


def cho_rows(present: Mapping[str, list], absent: Mapping[str, list], *, channels: str = "lg", n_channels: int = 3,
             width_px: float | None = None, seed: int = 0, n_bootstrap: int = 500,
             **columns: Any) -> list[dict[str, Any]]:
    """Set-level CHO detectability of each method (case ``all``): AUC and d′ with bootstrap CIs.

    ``channels="lg"``: ``n_channels`` Laguerre–Gauss channels of width ``width_px`` (the same for
    every method, so their observers differ only in the images)."""
    from spectdl.metrics.observer import cho_detectability, dog_channels, laguerre_gauss_channels

    rows = []
    for method in present:
        p, a = torch.stack(present[method]), torch.stack(absent[method])
        if len(p) < 4 or len(a) < 4:
            continue
        size = tuple(p.shape[-2:])
        u = laguerre_gauss_channels(size, n_channels=n_channels, width_px=width_px) if channels == "lg" else \
            dog_channels(size, n_channels=n_channels)
        r = cho_detectability(p, a, channels=u, seed=seed, n_bootstrap=n_bootstrap)
        for metric, value, ci in (("auc", r.auc, r.auc_ci), ("d_prime", r.d_prime, r.d_prime_ci)):
            rows.append({"case": "all", "method": method, "metric": metric, "value": float(value),
                         "ci_low": float(ci[0]), "ci_high": float(ci[1]), "n_present": r.n_present,
                         "n_absent": r.n_absent, **columns})
    return rows


def consistency_rows(images: Mapping[str, Mapping[str, torch.Tensor]], projections: Mapping[str, Mapping[str, torch.Tensor]],
                     projector_for: Callable[[str], Any], **columns: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Poisson deviance per count of every method's forward-projected image against each measured
    data set (``projections[data_name][case]``), and the mean per-view deviance of each method and
    data set (for the residual figure). ``projector_for(case)`` is the study's system model of the case."""
    from spectdl.metrics.consistency import data_consistency

    rows: list[dict[str, Any]] = []
    per_view: dict[str, Any] = {}
    for case in next(iter(images.values())):
        proj = projector_for(case)
        for method, by_case in images.items():
            x = by_case[case].reshape((1, 1) + tuple(proj.grid.shape))
            for data_name, measured in projections.items():
                y = measured[case].reshape(proj.projection_shape(1, 1))
                if not bool((x > 0).any()):
                    # An empty image (e.g. a network whose output is clamped to 0 everywhere) predicts
                    # no counts: the measured counts are infinitely unlikely under it.
                    rows.append({"case": case, "method": method, "metric": "deviance", "value": math.inf,
                                 "data": data_name, **columns})
                    continue
                dc = data_consistency(x, proj, y)
                rows.append({"case": case, "method": method, "metric": "deviance", "value": float(dc.deviance_per_count[0]),
                             "data": data_name, **columns})
                acc = per_view.setdefault(data_name, {}).setdefault(method, [])
                acc.append(dc.per_view[0].cpu().numpy())
    means = {d: {m: np.nanmean(np.stack(v), 0).tolist() for m, v in by_m.items()} for d, by_m in per_view.items()}
    return rows, means


def require_columns(manifest: str | Path, columns: Sequence[str], splits: Sequence[str]) -> None:
    """A case manifest must have ``columns`` and at least one case in each of ``splits``; one
    InputError names the file, what is missing and what was found."""
    from spectdl.data import load_manifest

    m = load_manifest(manifest)
    missing = [c for c in columns if c not in m.columns]
    empty = [s for s in splits if not m.split(s)]
    if missing or empty:
        parts = ([f"no column {missing} (found {list(m.columns)})"] if missing else []) + \
                ([f"no case in split {empty}"] if empty else [])
        raise InputError(f"--data {m.path}: {'; '.join(parts)}; the study needs columns {list(columns)} "
                         f"and the splits {list(splits)}")


def sample_phantoms(manifest: str | Path, cases: CaseSet) -> dict[str, Any]:
    """Each simulated case's phantom, re-rendered from its recorded seed (full ``info``)."""
    from spectdl.data.simulation import sample_phantom

    return {c: sample_phantom(manifest, int(cases.info[c]["index"])) for c in cases.ids}


def region_masks(cases: CaseSet, dataset: str, *, phantoms: Mapping[str, Any] | None = None,
                 nema_slices: int = 12, lesion_label: str = "lesion") -> dict[str, dict[str, torch.Tensor]]:
    """The regions the image metrics use, ``{region: {case: mask}}``, the same for every method:

    * ``volume``: every voxel (full slices);
    * ``lesions`` (phantoms with a ``lesion`` label): the lesions dilated by one voxel;
    * ``sphere_slices`` (NEMA IEC): ``nema_slices`` whole axial slices centred on the sphere plane.
    """
    some = cases.get(cases.ids[0], "target")
    regions: dict[str, dict[str, torch.Tensor]] = {}
    if dataset != "nema":
        regions["volume"] = {c: torch.ones_like(cases.get(c, "target"), dtype=torch.bool) for c in cases.ids}
    if phantoms is None:
        return regions
    for c in cases.ids:
        ph = phantoms[c]
        shape = some.shape[1:]
        if "sphere_centres_mm" in ph.info:
            z = float(ph.info["sphere_centres_mm"][0, :, 2].mean())
            iz = _voxel(ph.grid, (0.0, 0.0, z))[2]
            lo = max(0, min(shape[2] - nema_slices, iz - nema_slices // 2))
            m = torch.zeros(shape, dtype=torch.bool)
            m[..., lo:lo + nema_slices] = True
            regions.setdefault("sphere_slices", {})[c] = m[None]
        elif lesion_label in ph.label_names:
            lesion = ph.labels[0, 0] == ph.label_names[lesion_label]
            if bool(lesion.any()):
                regions.setdefault("lesions", {})[c] = _dilate(lesion, 3)[None]
    return regions


def save_examples(path: Path, images: Mapping[str, Mapping[str, torch.Tensor]], cases: CaseSet,
                  n_cases: int = 2, regions: Mapping[str, Mapping[str, torch.Tensor]] | None = None) -> Path:
    """One axial slice of the first ``n_cases`` cases of every method (``<case>/<method>``) for the
    report's image grids and difference images: the centre of the case's first region (the sphere
    plane, a lesion), else the central slice; a 2-D case (``[X, Y]``) as it is."""
    out = {}
    for c in cases.ids[:n_cases]:
        z = None
        for by_case in (regions or {}).values():
            if c in by_case and bool(by_case[c].any()):
                zs = torch.nonzero(by_case[c].reshape(by_case[c].shape[-3:]).any(0).any(0)).flatten()
                z = int(zs[len(zs) // 2])
                break
        for method, by_case in images.items():
            if by_case[c].dim() == 2:  # a 2-D case is its own slice
                out[f"{c}/{method}"] = by_case[c]
                continue
            v = by_case[c].reshape(by_case[c].shape[-3:])
            out[f"{c}/{method}"] = v[..., v.shape[-1] // 2 if z is None else z]
    return save_volumes(path, out)


def case_projector(manifest: str | Path, cases: CaseSet, mu_key: str = "mu") -> Callable[[str], Any]:
    """``projector_for(case)``: the simulation's system model with the case's own μ map."""
    from spectdl.data.simulation import simulation_projector

    def projector_for(case: str):
        mu = cases.get(case, mu_key)
        return simulation_projector(manifest, mu.reshape((1, 1) + tuple(mu.shape[1:])))

    return projector_for


def pvc_images(manifest: str | Path, cases: CaseSet, ids: Sequence[str], variants: Mapping[str, Mapping[str, Any]], *,
               batch_size: int, recon_iterations: int, pvc_iterations: int, eps: float, image: str = "spect",
               labels: str = "labels", mu: str = "mu", mask: str | None = None) -> dict[str, dict[str, torch.Tensor]]:
    """Iterative-Yang PVC (:func:`spectdl.recon.pvc.iterative_yang`) of the cases ``ids`` of one simulation,
    ``batch_size`` at a time with the simulation's projector and each batch's μ maps.

    ``variants`` maps a name to the :func:`~spectdl.recon.pvc.misregister_templates` arguments of its
    templates (``{}``: the case's own labels). Returns ``{variant: {case: [1, *grid] image}}``, times the
    case's ``mask`` volume when given.
    """
    from spectdl.data.simulation import simulation_projector
    from spectdl.recon.pvc import iterative_yang, misregister_templates

    out: dict[str, dict[str, torch.Tensor]] = {name: {} for name in variants}
    for i in range(0, len(ids), batch_size):
        batch = list(ids[i : i + batch_size])
        x = torch.stack([cases.get(c, image) for c in batch]).clamp_min(0)
        lab = torch.stack([cases.get(c, labels) for c in batch]).long()
        proj = simulation_projector(manifest, torch.stack([cases.get(c, mu) for c in batch]).float())
        for name, mis in variants.items():
            templates = misregister_templates(lab, **mis) if mis else lab
            y, _ = iterative_yang(x, templates, proj, recon_iterations=recon_iterations, recon_subsets=1,
                                  pvc_iterations=pvc_iterations, eps=eps)
            out[name].update({c: y[j] * (cases.get(c, mask) if mask else 1.0) for j, c in enumerate(batch)})
    return out


def sinogram_inputs(cases: CaseSet, sinograms: Mapping[str, str], *, mu: str = "mu", rows: int = 128) -> CaseSet:
    """Add ``input_<name>`` to every case: its sinogram ``cases[sinograms[name]]`` ``[1, V, R]``,
    wrap-padded to ``rows`` views (:func:`spectdl.models.spectnet.wrap_pad_sinogram`), stacked with
    the μ map ``[1, X, Y]`` as ``[2, rows, R, 1]``: the 2-channel input of a sinogram network, as a
    one-slice volume for :func:`spectdl.inference.enhance_volume`."""
    from spectdl.models.spectnet import wrap_pad_sinogram

    for c in cases.ids:
        m = cases.get(c, mu)
        for name, key in sinograms.items():
            sino = wrap_pad_sinogram(cases.get(c, key).float(), rows)
            if sino.shape[-2:] != m.shape[-2:]:
                raise InputError(f"case {c}: padded sinogram {tuple(sino.shape[-2:])} and μ map {tuple(m.shape[-2:])} "
                                 "differ; expected the same size to stack them as channels")
            cases.volumes[c][f"input_{name}"] = torch.cat([sino, m.float()], 0)[..., None]
    return cases


def region_stats_rows(images: Mapping[str, Mapping[str, torch.Tensor]], masks: Mapping[str, Mapping[str, torch.Tensor]],
                      **columns: Any) -> list[dict[str, Any]]:
    """``region_mean`` and ``region_sd`` (population SD) of every method's image in every region,
    one row each per case (SPECTnet's Table 1 reports mean (SD) of the high-uptake region and the
    background)."""
    rows = []
    for region, by_case in masks.items():
        for method, imgs in images.items():
            for c, img in imgs.items():
                if c not in by_case:
                    continue
                v = img.reshape(by_case[c].shape)[by_case[c]].to(torch.float64)
                if v.numel() == 0:
                    continue
                for metric, value in (("region_mean", v.mean()), ("region_sd", v.std(unbiased=False))):
                    rows.append({"case": c, "method": method, "metric": metric, "value": float(value),
                                 "region": region, **columns})
    return rows


def closest_cases(values: Mapping[str, float], targets: Sequence[float]) -> dict[float, str]:
    """For each target, the case whose value is closest to it (ties: the first case id in sorted
    order), e.g. the test cases of SPECTnet's Table 1 by their high-uptake value."""
    if not values:
        raise InputError("values: no cases to choose from")
    order = sorted(values)
    return {t: min(order, key=lambda c: abs(values[c] - t)) for t in targets}


def consistency_checks(rows: Sequence[Mapping[str, Any]], *, phantom: str = "truth", baseline: str = "osem",
                       image_errors: Sequence[tuple[str, str]] = (("mse", "image"), ("uptake_mae", "high")),
                       tolerance: float = 1.1, factor: float = 2.0, noise_level: str | None = None,
                       group: Sequence[str] = ("dataset", "level")) -> list[dict[str, Any]]:
    """Which methods' images look good but do not explain the measured data, from per-case rows.

    Within each ``group`` (e.g. one test set and data set), from the means over cases:

    * a method *looks good* when, on at least one of ``image_errors`` (``(metric, region)``, lower
      is better, e.g. the image MSE against the phantom), its mean is at most ``tolerance`` times the
      ``baseline``'s;
    * it *does not explain the data* when its mean ``deviance`` (Poisson deviance per count of its
      forward projection against the measured data) exceeds ``factor`` times the reference deviance:
      the largest of the ``phantom``'s and the ``baseline``'s in the group and, with ``noise_level``,
      the phantom's on the ``noise_level`` data of the same other group columns. That last one is the
      counting-noise floor: on noise-free data the phantom's deviance is 0 and a converged baseline's
      nearly so, and without a floor every departure smaller than counting noise would count;
    * it is *flagged* when both hold.

    Returns one dict per group and method other than the phantom and the baseline: the group
    columns, ``method``, ``deviance``, ``reference_deviance``, ``error_ratio`` (``{metric_region:
    method mean / baseline mean}``), ``looks_good`` and ``flagged``. Groups without deviance rows of
    the phantom or the baseline are skipped. A deviance row without a value counts as infinite:
    :func:`consistency_rows` writes inf for an image that predicts no counts, which JSON and the saved
    ``metrics.csv`` keep as empty, so the rows read back give the same answer as those written."""
    import pandas as pd

    df = pd.DataFrame(list(rows))
    if df.empty or "metric" not in df.columns:
        return []
    if "case" in df.columns:
        df = df[df["case"].astype(str) != "all"]
    df = df.assign(value=pd.to_numeric(df["value"], errors="coerce"))
    df.loc[(df["metric"] == "deviance") & df["value"].isna(), "value"] = math.inf
    df = df[df["value"].notna()]
    keys = [g for g in group if g in df.columns]
    dev = df[df["metric"] == "deviance"]
    if dev.empty:
        return []

    def means(part, metric, region=None):
        sel = part[part["metric"] == metric]
        if region is not None:
            sel = sel[sel["region"] == region] if "region" in sel.columns else sel.iloc[0:0]
        return sel.groupby("method")["value"].mean()

    floors = {}
    if noise_level is not None and "level" in keys:
        other = [k for k in keys if k != "level"]
        noisy = dev[(dev["level"] == noise_level) & (dev["method"] == phantom)]
        for values, part in (noisy.groupby(other) if other else [((), noisy)]):
            floors[values if isinstance(values, tuple) else (values,)] = float(part["value"].mean())
    out = []
    for values, part in (df.groupby(keys) if keys else [((), df)]):
        values = values if isinstance(values, tuple) else (values,)
        cols = dict(zip(keys, values))
        d = means(part, "deviance")
        if phantom not in d or baseline not in d:
            continue
        refs = [float(d[phantom]), float(d[baseline])]
        floor = floors.get(tuple(v for k, v in cols.items() if k != "level"))
        if floor is not None:
            refs.append(floor)
        reference = max(refs)
        errors = {f"{m}_{r}": means(part, m, r) for m, r in image_errors}
        for method, mean in d.items():
            if method in (phantom, baseline):
                continue
            ratio = {k: float(e[method] / e[baseline]) for k, e in errors.items()
                     if method in e and baseline in e and e[baseline] > 0}
            looks_good = any(v <= tolerance for v in ratio.values())
            explains = not mean > factor * reference
            out.append({**cols, "method": method, "deviance": float(mean), "reference_deviance": reference,
                        "error_ratio": ratio, "looks_good": looks_good, "flagged": looks_good and not explains})
    return out


# --------------------------------------------------------------------------------------------------
# Projection-space studies: reconstruction of several projection sets, crops, deviance, counts


def osem_images(folder: Path, manifest: str | Path, cases: CaseSet, sources: Mapping[str, Mapping[str, torch.Tensor]],
                *, iterations: int, subsets: int, batch_size: int = 8, device: str = "cpu",
                butterworth_order: int | None = None, butterworth_cutoff: float | None = None,
                mu: str = "mu") -> dict[str, str]:
    """OSEM (``iterations`` × ``subsets``) of every projection set ``sources[name][case]``
    ``[1, V, R, Z]`` with the simulation's own system model and the case's μ map, then an optional
    3-D Butterworth post-filter (cutoff as a fraction of Nyquist); one ``folder/<name>.npz`` each
    (``/`` in a name becomes ``_`` in the file name). Images are in counts-per-voxel units of the
    data (not calibrated), so images of data scaled alike compare directly."""
    from spectdl.data.simulation import simulation_projector
    from spectdl.recon import butterworth_filter, osem

    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, by_case in sources.items():
        images = {}
        for i in range(0, len(cases.ids), batch_size):
            ids = cases.ids[i:i + batch_size]
            y = torch.stack([by_case[c].float().clamp_min(0) for c in ids]).to(device)
            proj = simulation_projector(manifest, torch.stack([cases.get(c, mu) for c in ids]).float().to(device),
                                        device=device)
            x = osem(y, proj, iterations, subsets)
            if butterworth_order is not None and butterworth_cutoff is not None:
                x = butterworth_filter(x, butterworth_cutoff, butterworth_order, spatial_dims=3).clamp_min(0)
            images.update({c: x[j].cpu() for j, c in enumerate(ids)})
        out[name] = str(save_volumes(folder / f"{name.replace('/', '_')}.npz", images))
    return out


def liver_dominated(phantom, projector, share: float, label: str = "liver") -> torch.Tensor:
    """``[1, V, R, Z]`` bool: the projection pixels whose noise-free counts come more than ``share``
    from region ``label`` (its activity projected alone through the same system, over the whole
    phantom projected): the liver crop of a perfusion study, made automatically."""
    x = phantom.activity.float()
    organ = x * (phantom.labels == phantom.label_names[label]).to(x.dtype)
    total = projector.A(x)[0]
    return projector.A(organ)[0] > share * total.clamp_min(1e-12)


def dilate_label(phantom, label: str, voxels: int = 1) -> torch.Tensor:
    """``[1, *grid]`` bool: region ``label`` of the phantom dilated by ``voxels`` (a cube)."""
    mask = (phantom.labels[0, 0] == phantom.label_names[label])
    return _dilate(mask, 2 * voxels + 1)[None] if voxels > 0 else mask[None]


def pearson_rows(images: Mapping[str, Mapping[str, torch.Tensor]], references: Mapping[str, torch.Tensor],
                 **columns: Any) -> list[dict[str, Any]]:
    """Voxel-wise Pearson ``r`` of every method's image against its reference, one row per case."""
    from spectdl.metrics.functional.correlation import pearson

    rows = []
    for method, by_case in images.items():
        for c, img in by_case.items():
            r = pearson(img.reshape(1, 1, -1, 1).double(), references[c].reshape(1, 1, -1, 1).double()).r
            rows.append({"case": c, "method": method, "metric": "pearson", "value": float(r.reshape(-1)[0]), **columns})
    return rows


def projection_deviance_rows(predicted: Mapping[str, torch.Tensor], measured: Mapping[str, torch.Tensor],
                             fraction: float, *, method: str, metric: str = "deviance_low_dose",
                             **columns: Any) -> list[dict[str, Any]]:
    """Poisson deviance per count of the measured (low-dose) counts ``y`` under the predicted
    full-dose mean scaled by the dose fraction, ``D(y; f·ŷ) / Σy``: whether a restored projection
    remains statistically consistent with the data it was made from (Poisson data under their own
    mean give about 1 per count at these levels)."""
    from spectdl.metrics.consistency import poisson_deviance

    rows = []
    for c, y_hat in predicted.items():
        y = measured[c].double()[None]
        d = poisson_deviance(y, (fraction * y_hat.double().clamp_min(0))[None])
        rows.append({"case": c, "method": method, "metric": metric, "value": float(d[0]), **columns})
    return rows


def count_rows(projections: Mapping[str, Mapping[str, torch.Tensor]], reference: Mapping[str, torch.Tensor],
               **columns: Any) -> list[dict[str, Any]]:
    """Total counts of every method's projections relative to the reference's, in per cent
    (count consistency: 0 when the totals agree)."""
    return [{"case": c, "method": m, "metric": "count_error_percent",
             "value": 100.0 * (float(v.double().sum()) / float(reference[c].double().sum()) - 1.0), **columns}
            for m, by_case in projections.items() for c, v in by_case.items()]


def case_max_rows(volumes: Mapping[str, torch.Tensor], *, metric: str, method: str, factor: float = 1.0,
                  **columns: Any) -> list[dict[str, Any]]:
    """One row per case: ``factor`` × the volume's maximum (e.g. the per-case output scale of a
    sigmoid network, the low-dose input's maximum × its margin, taken from the input alone)."""
    return [{"case": c, "method": method, "metric": metric, "value": float(factor) * float(v.max()), **columns}
            for c, v in volumes.items()]


def count_level_rows(cases: CaseSet, key: str, paper_rmse: Mapping[float, float]) -> list[dict[str, Any]]:
    """The count level of the projections ``key``: their mean counts per pixel over the cases
    (method ``reference``), and per dose fraction ``f`` the mean that reproduces a published
    low-dose RMSE through the thinning theory ``RMSE² = (1/f − 1)·mean`` (method ``paper``)."""
    mean = float(torch.stack([cases.get(c, key).double().mean() for c in cases.ids]).mean())
    return ([{"case": "all", "method": "reference", "metric": "mean_counts_per_pixel", "value": mean}]
            + [{"case": "all", "method": "paper", "metric": "mean_counts_per_pixel", "level": f,
                "value": rmse**2 / (1.0 / f - 1.0)} for f, rmse in paper_rmse.items()])


def gated_predictions(folder: Path, checkpoint: str, cases: CaseSet, key: str, fraction: float, gates: int, *,
                      seed: int, device: str = "cpu") -> str:
    """The gated variant of a projection-restoration study: each case's counts ``key`` split into
    ``gates`` equal ECG gates (a multinomial split, :func:`spectdl.noise.split_gates`), each gate
    thinned to ``fraction`` and scaled by ``1/fraction``, and restored by the checkpoint's model.
    Saves ``folder/gated.npz`` with ``<case>/<gate>/reference`` (the gate's full counts),
    ``…/input`` and ``…/pix2pix``; returns its path. Randomness from ``seed`` alone."""
    from spectdl.inference import enhance_volume
    from spectdl.noise import split_gates, thin
    from spectdl.training import load_model_from_checkpoint

    model, meta = load_model_from_checkpoint(checkpoint, map_location=device)
    gen = torch.Generator().manual_seed(int(seed))
    out = {}
    for c in cases.ids:
        for k, full in enumerate(split_gates(cases.get(c, key), [1.0] * gates, gen)):
            low = thin(full, fraction, gen) / fraction
            with torch.no_grad():
                pred = enhance_volume(model, low.float(), meta=meta, device=device).cpu()
            out.update({f"{c}/{k}/reference": full, f"{c}/{k}/input": low, f"{c}/{k}/pix2pix": pred})
    folder.mkdir(parents=True, exist_ok=True)
    return str(save_volumes(folder / "gated.npz", out))


def gate_sets(volumes: Mapping[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """``{kind: {"<case>_g<gate>": volume}}`` from :func:`gated_predictions`' ``<case>/<gate>/<kind>`` keys."""
    out: dict[str, dict[str, torch.Tensor]] = {}
    for key, v in volumes.items():
        case, gate, kind = key.split("/")
        out.setdefault(kind, {})[f"{case}_g{gate}"] = v
    return out


# --------------------------------------------------------------------------------------------------
# Fast planar scans: real-like repeat acquisitions


def scan_midpoints(one_x_minutes: float, order: Sequence[float] = (3.0, 2.0)) -> dict[float, float]:
    """Minutes from the middle of the 1x scan to the middle of each faster scan, when the scans
    run back to back in ``order`` (the paper's: 3x, then 2x, then 1x). A scan at speed ``v`` lasts
    ``one_x_minutes / v``; every value is negative (before the 1x scan)."""
    if not one_x_minutes > 0:
        raise InputError(f"one_x_minutes: expected a duration > 0, found {one_x_minutes!r}")
    starts, t = {}, 0.0
    for v in (*order, 1.0):
        starts[float(v)] = t + 0.5 * one_x_minutes / v
        t += one_x_minutes / v
    return {v: m - starts[1.0] for v, m in starts.items() if v != 1.0}


def real_like_scans(folder: Path, cases: CaseSet, label_names: Mapping[str, int], pixel_mm: float, *,
                    minutes: Mapping[float, float], seed: int, kinetics: Any = None, expected: str = "expected",
                    labels: str = "labels", max_shift_mm: float = 5.0, max_rotation_deg: float = 1.0,
                    max_nonrigid_mm: float = 6.0) -> dict[str, Any]:
    """Independent fast scans of every case (:func:`spectdl.noise.scans.repeat_scan`): for each
    speed ``v`` of ``minutes`` (its time, minutes from the 1x scan, e.g. :func:`scan_midpoints`),
    the case's noise-free 1x ``expected`` counts ``[V, H, W]`` (the views share one motion) under
    the kinetics at that time, ``v`` times shorter, moved by a fresh bounded motion, with their own
    Poisson noise. Saves ``folder/scans.npz`` (keys ``<case>/<v>``) and returns its path with each
    scan's motion record (``motion``: ``{"<case>/<v>": record}``). Randomness from ``seed`` alone,
    one generator per case, so a case's scans do not depend on the other cases."""
    from spectdl.noise.scans import ScanKinetics, random_motion, repeat_scan

    kin = kinetics or ScanKinetics()
    out, records = {}, {}
    for i, c in enumerate(cases.ids):
        gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + i)
        lam = cases.get(c, expected).double()
        lab = cases.get(c, labels).long().expand_as(lam)
        for v, t in sorted(minutes.items(), reverse=True):
            motion = random_motion(tuple(lam.shape[-2:]), pixel_mm, gen, max_shift_mm=max_shift_mm,
                                   max_rotation_deg=max_rotation_deg, max_nonrigid_mm=max_nonrigid_mm)
            key = f"{c}/{v:g}"
            out[key] = repeat_scan(lam, lab, label_names, speed=v, minutes=t, generator=gen, kinetics=kin,
                                   motion=motion)
            records[key] = {**motion.record(), "minutes": float(t), "speed": float(v)}
    folder.mkdir(parents=True, exist_ok=True)
    return {"scans": str(save_volumes(folder / "scans.npz", out)), "motion": records}


# --------------------------------------------------------------------------------------------------
# Myocardial perfusion: polar maps, scores and their agreement with full dose

PERFUSION_INDICES = ("sss", "ss_percent", "extent", "tpd")


def perfusion_rows(images: Mapping[str, Mapping[str, torch.Tensor]], normals: Mapping[str, torch.Tensor],
                   phantoms: Mapping[str, Any], *, voxel_size_mm: float, levels: Mapping[str, float],
                   territory_threshold: int = 2) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The perfusion analysis of :mod:`spectdl.cardiac` on every reconstructed image.

    ``images``: ``{"reference": {case: image}, "<method>/<level>": {case: image}}`` (the full dose
    and each method's image at each level); ``normals``: the healthy images of the normal database.
    Per case: the indices (``sss``, ``ss_percent``, ``extent``, ``tpd``, ``sss_lad``/``lcx``/``rca``),
    their absolute error against full dose (``*_abs_error``), the SSS category, the LV axis error
    against the phantom's axis (degrees) and, where the thresholded wall is closed, the cavity and
    myocardial volumes (ml) and the wall thickness (mm, :func:`spectdl.cardiac.lv_measures`). Per method and level (case ``all``): Pearson ``r`` of each
    index against full dose (``pearson_<index>``), the per cent of cases whose SSS category is
    unchanged from full dose, and per territory the sensitivity and specificity of "summed territory
    score ≥ ``territory_threshold``" against the phantom's defects. The reference's rows repeat at
    every level, so that each level pairs with it. Returns ``(rows, analysis)``; ``analysis`` holds
    the normal database and the cases the automatic analysis could not read.
    """
    from spectdl.cardiac import (SSS_CATEGORIES, NormalDatabase, axis_error_deg, estimate_lv_axis, lv_measures,
                                 perfusion_indices, polar_map, sss_category)
    from spectdl.errors import SpectdlError
    from spectdl.phantoms.aha import TERRITORIES

    def analyse(img):
        v = img.reshape(img.shape[-3:])
        lv = estimate_lv_axis(v, voxel_size_mm)
        return lv, polar_map(v, voxel_size_mm, lv)

    failed: list[str] = []
    normal_maps = []
    for c, v in normals.items():
        try:
            normal_maps.append(analyse(v)[1])
        except SpectdlError as exc:
            failed.append(f"normals {c}: {exc}")
    db = NormalDatabase.from_maps(normal_maps)
    found: dict[str, dict[str, dict[str, float]]] = {}
    for key, by_case in images.items():
        for c, img in by_case.items():
            try:
                lv, pm = analyse(img)
            except SpectdlError as exc:
                failed.append(f"{key} {c}: {exc}")
                continue
            ind = {k: float(v) for k, v in perfusion_indices(pm, db).items()}
            ind["sss_category"] = float([n for n, _ in SSS_CATEGORIES].index(sss_category(ind["sss"])))
            ind["axis_error_deg"] = axis_error_deg(lv.axis, phantoms[c].info["lv_axis"][0])
            with contextlib.suppress(SpectdlError):  # a defect can cut the thresholded wall open
                ind.update(lv_measures(lv, voxel_size_mm))
            found.setdefault(key, {})[c] = ind
    rows: list[dict[str, Any]] = []
    ref = found.get("reference", {})
    truth = {c: phantoms[c].info["territory_defect"][0].tolist() for c in ref}
    for name, f in levels.items():
        for c, ind in ref.items():
            rows += [{"case": c, "method": "reference", "metric": k, "value": v, "level": f} for k, v in ind.items()]
        for key in [k for k in found if k.endswith(f"/{name}")]:
            method = key.split("/")[0]
            for c, ind in found[key].items():
                rows += [{"case": c, "method": method, "metric": k, "value": v, "level": f} for k, v in ind.items()]
                if c in ref:
                    rows += [{"case": c, "method": method, "metric": f"{k}_abs_error", "value": abs(ind[k] - ref[c][k]),
                              "level": f} for k in PERFUSION_INDICES]
            paired = [c for c in found[key] if c in ref]
            for k in PERFUSION_INDICES:
                a = np.array([found[key][c][k] for c in paired])
                b = np.array([ref[c][k] for c in paired])
                if len(paired) >= 3 and a.std() > 0 and b.std() > 0:
                    rows.append({"case": "all", "method": method, "metric": f"pearson_{k}", "level": f,
                                 "value": float(np.corrcoef(a, b)[0, 1])})
            if paired:
                same = [found[key][c]["sss_category"] == ref[c]["sss_category"] for c in paired]
                rows.append({"case": "all", "method": method, "metric": "sss_category_unchanged_percent", "level": f,
                             "value": 100.0 * sum(same) / len(same)})
        for key in ["reference"] + [k for k in found if k.endswith(f"/{name}")]:
            method = key.split("/")[0]
            for t, territory in enumerate(TERRITORIES):
                called = {c: found[key][c][f"sss_{territory.lower()}"] >= territory_threshold for c in found[key] if c in truth}
                pos = [c for c in called if truth[c][t]]
                neg = [c for c in called if not truth[c][t]]
                if pos:
                    rows.append({"case": "all", "method": method, "metric": f"sensitivity_{territory.lower()}", "level": f,
                                 "value": sum(called[c] for c in pos) / len(pos)})
                if neg:
                    rows.append({"case": "all", "method": method, "metric": f"specificity_{territory.lower()}", "level": f,
                                 "value": sum(not called[c] for c in neg) / len(neg)})
    errors = [ind["axis_error_deg"] for by in found.values() for ind in by.values()]
    analysis = {"normal_database": db.to_dict(), "failed": failed, "n_normals": len(normals),
                "axis_error_summary": (f"median {np.median(errors):.1f}°, max {np.max(errors):.1f}° over "
                                       f"{len(errors)} images") if errors else "n/a"}
    return rows, analysis
