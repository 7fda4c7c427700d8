"""Paired simulated data: phantom → projector → Poisson noise at several count levels → OSEM.

:func:`simulate` writes ``out_dir/shard-00000.h5, …`` (see :mod:`spectdl.data.shards`) and
``out_dir/manifest.json``, which records the config, every shard (first sample, count, SHA-256),
the splits, and every sample's seeds, count level and scalar phantom parameters, so that
:func:`regenerate` can rebuild any sample exactly.

For every sample ``i`` (in shard ``s``, batch ``k`` of that shard, row ``b`` of the batch):

* the phantom comes from the batch's seed ``mix(seed, 1, s, k)``, sample ``b`` from seed
  ``mix(seed, 1, s, k) + b`` (the phantoms' own batching rule, ``info["seeds"]``);
* its noise comes from its own generator seeded with ``mix(seed, 2, i)``: the total count ``T``
  (log-uniform in ``counts.total``), then ``n ~ Poisson(ȳ)`` with ``ȳ = A x · T / Σ A x``, then one
  binomial thinning ``Binomial(n, f)`` per count level ``f < 1``, levels taken in order of name.

Stored keys (``[C, *spatial]`` per sample): ``activity``, ``mu_per_cm``, ``labels`` (uint8),
``expected`` (``ȳ``), ``counts_<level>`` and, with ``recon``, ``recon_<level>`` (OSEM of
``counts_<level>``, in the units of ``activity × scale × f``); planar phantoms store ``expected``
(anterior and posterior as 2 channels), ``labels``, ``lesion_mask`` (uint8) and ``counts_<level>``.

Determinism: a shard depends only on the config and its index. Shards are made batch by batch with
one thread (:func:`~spectdl.data._util.single_thread`), whichever process makes them, so the
bytes do not depend on ``workers``. :func:`regenerate` re-runs the sample's whole batch (batched
rendering and projection are not guaranteed to round exactly as a batch of one would) and returns
its row. Identical bytes are guaranteed on the CPU with the same torch version (recorded in the
manifest); CUDA kernels may round differently from run to run.

Several machines: ``simulate(config, out_dir, shards=(start, stop))`` makes only those shards, each
with a sidecar ``shard-NNNNN.json`` (its manifest entry, its samples' records, the config and the
versions) and no manifest; :func:`finalize` then checks that every shard is present and intact and
that all came from the same config and versions, writes the manifest a one-run :func:`simulate`
would have written (the same bytes) and removes the sidecars. A shard's bytes do not depend on the
run that made it, so the shards equal those of one run.

Memory: a worker holds one batch at a time and writes it into the open temporary shard before
making the next, so memory does not grow with ``n_samples``.
"""

from __future__ import annotations

import math
import multiprocessing
import shutil
import time
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from spectdl.data._util import atomic_write_bytes, json_bytes, single_thread
from spectdl.data.config import SimulationConfig, load_simulation_config
from spectdl.data.seeding import generator_for, mix_seed
from spectdl.data.shards import ShardWriter, open_shard, remove_stale_temporaries, shard_name
from spectdl.errors import InputError, SpectdlError
from spectdl.io.atomic import file_sha256
from spectdl.noise import expected_counts, poisson, thin
from spectdl.physics import forward_loop

__all__ = ["SimulationResult", "finalize", "load_manifest_json", "read_sample", "reconstruct_simulation", "regenerate",
           "simulate", "verify_shards"]

MANIFEST_FORMAT = "spectdl-simulation"
MANIFEST_VERSION = 1
MANIFEST_NAME = "manifest.json"
SIDECAR_FORMAT = "spectdl-simulation-shard"
SIDECAR_VERSION = 1

_PROJECTORS: dict[tuple, Any] = {}  # per process: projectors reused across the batches of a run


@dataclass(frozen=True)
class SimulationResult:
    """What :func:`simulate` wrote.

    Attributes:
        out_dir: the output folder.
        manifest_path: ``out_dir/manifest.json``.
        n_samples: number of samples.
        shards: the shard files, in order.
        bytes_written: total size of the shards and the manifest.
        seconds: wall time of the run.
        workers: processes that made shards (1 means in this process).
        made: indices of the shards this run made (all of them unless ``simulate(shards=...)``).
            With a shard range no manifest is written and ``manifest_path`` does not exist yet
            (:func:`finalize` writes it).
    """

    out_dir: Path
    manifest_path: Path
    n_samples: int
    shards: tuple[Path, ...]
    bytes_written: int
    seconds: float
    workers: int
    made: tuple[int, ...] = ()

    @property
    def samples_per_second(self) -> float:
        return self.n_samples / self.seconds if self.seconds > 0 else math.inf


# ------------------------------------------------------------------------------------------------
# Layout: shards, batches, splits


def shard_layout(config: SimulationConfig) -> list[tuple[int, int]]:
    """``(first sample, count)`` of every shard."""
    n, size = config.n_samples, config.shard_size
    return [(first, min(size, n - first)) for first in range(0, n, size)]


def batch_layout(config: SimulationConfig, shard_count: int) -> list[tuple[int, int]]:
    """``(first row in the shard, count)`` of every batch of a shard of ``shard_count`` samples."""
    size = config.batch_size
    return [(first, min(size, shard_count - first)) for first in range(0, shard_count, size)]


def split_ranges(config: SimulationConfig) -> dict[str, tuple[int, int]]:
    """Contiguous ``[start, stop)`` index ranges of the splits, in the config's order.

    Boundaries are ``round(n · cumulative fraction)``; the samples are independent draws, so
    contiguous ranges are as random as any other assignment and keep each split in few shards.
    """
    out, cum, start = {}, 0.0, 0
    names = list(config.splits)
    for i, name in enumerate(names):
        cum += config.splits[name]
        stop = config.n_samples if i == len(names) - 1 else int(round(config.n_samples * cum))
        out[name] = (start, max(start, stop))
        start = max(start, stop)
    return out


# ------------------------------------------------------------------------------------------------
# One batch


def _projector(config: SimulationConfig, grid, device: torch.device, compiled: bool | None = None):
    from spectdl.physics import SpectProjector

    proj = _cached_projector(config, grid, device)
    proj.compiled_loop = SpectProjector.compiled_loop if compiled is None else compiled
    return proj


def _cached_projector(config: SimulationConfig, grid, device: torch.device):
    o = config.orbit
    key = (grid, o.n_angles, o.radius_mm, o.arc_deg, o.start_deg, o.direction, config.collimator_model(),
           config.recon is not None, str(device))
    proj = _PROJECTORS.get(key)
    if proj is None:
        proj = _new_projector(config, grid, device, cache_attenuation=config.recon is not None)
        if len(_PROJECTORS) >= 2:  # a run's geometries: the grid's and, with a field of view, the field's
            _PROJECTORS.clear()
        _PROJECTORS[key] = proj
    return proj


def _new_projector(config: SimulationConfig, grid, device: torch.device, *, cache_attenuation: bool):
    from spectdl.geometry import Orbit
    from spectdl.physics import SpectProjector

    o = config.orbit
    radius = o.radius_mm if o.radius_mm is not None else grid.extent_mm[0] / 2.0
    orbit = Orbit.circular(o.n_angles, radius, o.arc_deg, o.start_deg, o.direction)
    coll = config.collimator_model()
    return SpectProjector(grid, orbit, coll, check_input=False, cache_attenuation=cache_attenuation)


def crop_to_fov(config: SimulationConfig, phantom):
    """The phantom's volumes (activity, μ map, labels, CT) cut to the config's field of view, with the
    field's grid; the phantom itself without ``fov``. Positions in ``info`` are in mm from the grid
    centre, which the centred crop keeps."""
    sl = config.fov_slices()
    if sl is None:
        return phantom
    import dataclasses

    changes = {k: getattr(phantom, k)[(..., *sl)] for k in ("activity", "mu_per_cm", "labels", "ct_hu")
               if getattr(phantom, k, None) is not None}
    return dataclasses.replace(phantom, grid=config.data_grid(), **changes)


def crop_projections(config: SimulationConfig, projections: torch.Tensor) -> torch.Tensor:
    """Projections ``[B, 1, V, R, Z]`` of the whole grid cut to the field's central radial bins and
    rows (the bins of a parallel-hole camera that sees only the field); unchanged without ``fov``."""
    sl = config.fov_slices()
    return projections if sl is None else projections[..., sl[0], sl[2]]


def _render(config: SimulationConfig, count: int, base_seed: int, device: torch.device):
    fn = config.phantom_function()
    kwargs = dict(config.phantom_kwargs)
    grid = config.voxel_grid()
    if grid is not None:
        kwargs["grid"] = grid
    return fn(batch_size=count, seed=base_seed, device=device, dtype=config.torch_dtype, **kwargs)


def _per_sample_params(info: Mapping[str, Any], count: int) -> dict[str, torch.Tensor]:
    """Sampled parameters with one row per sample (``info`` tensors whose first axis is the batch);
    an empty list per sample (e.g. no lesions: ``[B, 0, 3]``) has nothing to store."""
    return {
        k: v.detach().cpu()
        for k, v in info.items()
        if isinstance(v, torch.Tensor) and v.dim() >= 1 and v.shape[0] == count and v.numel() > 0
    }


def simulate_batch(config: SimulationConfig, shard: int, batch: int, first_index: int, count: int,
                   device: torch.device | str = "cpu", *, compiled: bool | None = None) -> dict[str, Any]:
    """Make one batch: ``{"arrays": {key: tensor [count, C, ...]}, "records": [...], "params": {...}}``.

    ``first_index`` is the global index of the batch's first sample. Deterministic given the
    arguments (see the module docstring for the seeds). ``compiled`` picks the forward projection's
    depth loop (``None``: the projector's default; :func:`regenerate` passes the manifest's).
    """
    device = torch.device(device)
    base_seed = mix_seed(config.seed, 1, shard, batch)
    ph = _render(config, count, base_seed, device)
    arrays: dict[str, torch.Tensor] = {}
    store = set(config.store)
    if config.kind == "planar":
        clean = torch.cat([ph.anterior, ph.posterior], 1)
        if config.planar_distance_mm is not None:
            from spectdl.physics.psf import planar_response

            clean = planar_response(clean, config.collimator_model(), config.planar_distance_mm,
                                    ph.grid.voxel_size_mm).clamp_min(0)
        proj = None
        if "lesion_mask" in store:
            arrays["lesion_mask"] = ph.lesion_mask.to(torch.uint8)
    else:
        proj = _projector(config, ph.grid, device, compiled)
        proj.set_mu_map(ph.mu_per_cm if config.attenuation else None)
        act = config.counts.activity
        # Uncached, so that the noise-free data (and hence every Poisson draw) are the same bytes
        # whether or not this run also reconstructs (a reconstructing projector caches factors).
        with proj.uncached():
            if act is None:
                clean = proj.A(ph.activity)
            else:
                # Counts per second of the field's activity; the time per view is drawn per sample below.
                mbq = activity_in_field_mbq(ph, act)
                clean = expected_counts(ph.activity, proj, mbq, act.sensitivity_cps_per_mbq, 1.0)
        # Counts per unit of activity refer to the whole body's activity, cropped or not.
        activity_sums = ph.activity.to(torch.float64).reshape(count, -1).sum(1)
        if config.fov is not None:
            # The whole body projects; the camera keeps the field's bins, and reconstruction has only
            # the field's voxels and μ map (a truncated reconstruction).
            clean = crop_projections(config, clean)
            proj.set_mu_map(None)
            ph = crop_to_fov(config, ph)
            proj = _projector(config, ph.grid, device, compiled)
            proj.set_mu_map(ph.mu_per_cm if config.attenuation else None)
        if "activity" in store:
            arrays["activity"] = ph.activity
        if "mu_per_cm" in store:
            arrays["mu_per_cm"] = ph.mu_per_cm
    if "ct_hu" in store:
        if getattr(ph, "ct_hu", None) is None:
            raise SpectdlError(f"store: phantom {config.phantom!r} returned no CT image; remove 'ct_hu' from store")
        arrays["ct_hu"] = ph.ct_hu
    if "labels" in store:
        if ph.labels is None:
            raise SpectdlError(f"store: phantom {config.phantom!r} returned no labels; remove 'labels' from store")
        # The dtype follows the phantom's label table, so every batch of a shard agrees.
        top = max(ph.label_names.values(), default=0)
        arrays["labels"] = ph.labels.to(torch.uint8 if top < 256 else torch.int32)

    lo, hi = config.counts.total_range
    act = config.counts.activity  # None for planar phantoms (the config refuses activity for them)
    params = _per_sample_params(ph.info, count)
    if act is not None:
        params["activity_in_field_mbq"] = mbq.cpu()
        params["time_per_view_s"] = torch.empty(count, dtype=torch.float64)
    # Sorted by name: a config read back from the (key-sorted) manifest draws the same noise.
    levels = sorted(config.counts.levels.items())
    independent = set(getattr(config.counts, "independent", ()) or ())
    noisy: dict[str, list[torch.Tensor]] = {name: [] for name, _ in levels}
    expected, records = [], []
    sums = clean.reshape(count, -1).sum(1).to(torch.float64)
    for b in range(count):
        index = first_index + b
        noise_seed = mix_seed(config.seed, 2, index)
        g = generator_for(noise_seed, device)
        u = float(torch.rand(1, generator=g, dtype=torch.float64, device=device))
        if not float(sums[b]) > 0:
            raise SpectdlError(f"sample {index}: the noise-free projections sum to 0; the phantom has no visible activity")
        if act is None:
            total = lo if hi == lo else math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))
            scale = total / float(sums[b])
            ybar = clean[b] * scale
        else:
            t_lo, t_hi = act.time_range
            seconds = t_lo + u * (t_hi - t_lo)
            params["time_per_view_s"][b] = seconds
            ybar = clean[b] * seconds
            total = float(sums[b]) * seconds
            # Counts per unit of phantom activity, as `scale` means in the other mode.
            scale = float(mbq[b]) * act.sensitivity_cps_per_mbq * seconds / float(activity_sums[b])
        full = poisson(ybar, g)
        for name, f in levels:
            if name in independent:
                # A second, shorter acquisition: its own Poisson draw at f·ȳ, not a subset of the first.
                noisy[name].append(poisson(ybar * f, g))
            else:
                noisy[name].append(full if f == 1.0 else thin(full, f, g))
        expected.append(ybar)
        records.append(dict(index=index, shard=shard, batch=batch, phantom_seed=base_seed + b,
                            noise_seed=noise_seed, total_counts=total, scale=scale))
    if "expected" in store:
        arrays["expected"] = torch.stack(expected)
    for name, f in levels:
        counts = torch.stack(noisy[name])
        if "counts" in store:
            arrays[f"counts_{name}"] = counts
        if config.recon is not None:
            scales = torch.tensor([r["scale"] for r in records], dtype=torch.float64)
            arrays[f"recon_{name}"] = reconstruct_batch(config, proj, counts, f, scales)
    if proj is not None:
        proj.set_mu_map(None)  # drop the batch's attenuation factors
    return {"arrays": arrays, "records": records, "params": params}


def activity_in_field_mbq(phantom, activity) -> torch.Tensor:
    """``[B]`` MBq in the phantom's field of view: region ``activity.region`` holds
    ``uptake_fraction · injected_mbq`` and the rest follows from the phantom's concentrations,
    ``A = injected · fraction · Σx / Σ_region x`` (see :class:`~spectdl.data.config.ActivityConfig`)."""
    names = phantom.label_names or {}
    if phantom.labels is None or activity.region not in names:
        raise SpectdlError(f"counts.activity.region: {activity.region!r} is not a region of the phantom; expected one "
                           f"of {sorted(n for n in names if n != 'outside')}")
    x = phantom.activity.to(torch.float64).reshape(phantom.activity.shape[0], -1)
    inside = (phantom.labels.reshape(x.shape) == names[activity.region]).to(torch.float64)
    region = (x * inside).sum(1)
    if bool((region <= 0).any()):
        raise SpectdlError(f"counts.activity.region: a sample has no activity in {activity.region!r}")
    return activity.injected_mbq * activity.uptake_fraction * x.sum(1) / region


def reconstruct_batch(config: SimulationConfig, proj, counts: torch.Tensor, fraction: float,
                      scales: torch.Tensor) -> torch.Tensor:
    """OSEM of a batch of counts ``[B, 1, ...]`` with the projector that simulated them.

    With ``recon.calibrate`` the image is divided by ``scale · f`` (the sample's counts per unit of
    activity times the level's time fraction), so every level is in the phantom's activity units,
    as a dose calibrator and the acquisition time put a real scan in Bq/ml.
    """
    from spectdl.recon import osem

    rec = osem(counts, proj, config.recon.iterations, config.recon.subsets)
    if getattr(config.recon, "calibrate", False):
        k = (scales * fraction).to(rec.dtype).reshape((-1,) + (1,) * (rec.dim() - 1))
        rec = rec / k.to(rec.device)
    return rec


# ------------------------------------------------------------------------------------------------
# One shard


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def make_shard(config: SimulationConfig, out_dir: str | Path, shard: int,
               on_batch: Callable[[int], None] | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Make shard ``shard`` batch by batch into a temporary file and rename it into place.

    Returns ``(shard entry, sample records)`` for the manifest. ``on_batch(n)`` is called after
    each batch of ``n`` samples (progress).
    """
    first, count = shard_layout(config)[shard]
    path = Path(out_dir) / shard_name(shard)
    device = torch.device(config.device)
    attrs = dict(shard=shard, first_index=first, n_samples=count, phantom=config.phantom, seed=config.seed)
    with single_thread(), torch.no_grad(), ShardWriter(path, count, config.compression, attrs) as writer:
        records: list[dict[str, Any]] = []
        for k, (row, n) in enumerate(batch_layout(config, count)):
            out = simulate_batch(config, shard, k, first + row, n, device)
            block = {key: _numpy(t) for key, t in out["arrays"].items()}
            block.update({f"params/{key}": _numpy(t) for key, t in out["params"].items()})
            for field in ("index", "phantom_seed", "noise_seed"):
                block[field] = np.asarray([r[field] for r in out["records"]], dtype=np.int64)
            for field in ("total_counts", "scale"):
                block[field] = np.asarray([r[field] for r in out["records"]], dtype=np.float64)
            writer.write(row, block)
            records.extend(_record(r, row + i, out["params"], i) for i, r in enumerate(out["records"]))
            del out, block  # only one batch alive at a time
            if on_batch is not None:
                on_batch(n)
        sha = writer.commit()
    entry = dict(file=path.name, first=first, count=count, sha256=sha, bytes=path.stat().st_size)
    return entry, records


def _record(r: dict[str, Any], row: int, params: Mapping[str, torch.Tensor], i: int) -> dict[str, Any]:
    scalars = {}
    for key, t in params.items():
        if t.dim() == 1:
            v = t[i].item()
            scalars[key] = float(v) if isinstance(v, float) else int(v)
    return dict(r, row=row, params=scalars)


def _worker_init() -> None:
    torch.set_num_threads(1)


def _worker_shard(config_dict: dict[str, Any], out_dir: str, shard: int):
    return make_shard(SimulationConfig.from_dict(config_dict), out_dir, shard)


# ------------------------------------------------------------------------------------------------
# The run


def _sample_shapes(config: SimulationConfig) -> dict[str, tuple[list[int], str]]:
    """Per-sample shape and dtype of every stored key (from one phantom, without projecting)."""
    ph = _render(config, 1, 0, torch.device("cpu"))
    dt = config.dtype
    out: dict[str, tuple[list[int], str]] = {}
    if config.kind == "planar":
        image = [2] + list(ph.anterior.shape[2:])
        proj_shape = image
        if "lesion_mask" in config.store:
            out["lesion_mask"] = ([1] + image[1:], "uint8")
    else:
        grid = (config.data_grid() or ph.grid).shape
        image = [1] + list(grid)
        proj_shape = [1, config.orbit.n_angles, grid[0]] + ([grid[2]] if len(grid) == 3 else [])
        for key in ("activity", "mu_per_cm", "ct_hu"):
            if key in config.store:
                out[key] = (image, dt)
    if "labels" in config.store:
        out["labels"] = ([1] + image[1:], "uint8" if max(ph.label_names.values(), default=0) < 256 else "int32")
    if "expected" in config.store:
        out["expected"] = (proj_shape, dt)
    for name in config.counts.levels:
        if "counts" in config.store:
            out[f"counts_{name}"] = (proj_shape, dt)
        if config.recon is not None:
            out[f"recon_{name}"] = (image, dt)
    return out


def _check_out_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"out_dir: {out_dir} exists and is not a folder")
    old = sorted(out_dir.glob("shard-*.h5")) + sorted(out_dir.glob("shard-*.json"))
    old += [out_dir / MANIFEST_NAME] if (out_dir / MANIFEST_NAME).exists() else []
    if old and not overwrite:
        raise InputError(
            f"out_dir: {out_dir} already holds a simulation ({len(old)} files, e.g. {old[0].name}); "
            f"expected an empty folder, or pass overwrite=True"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    for p in old:
        p.unlink()
    remove_stale_temporaries(out_dir)


def _check_space(out_dir: Path, config: SimulationConfig, shapes, n_samples: int | None = None) -> None:
    per_sample = sum(math.prod(s) * np.dtype(d).itemsize for s, d in shapes.values())
    n_samples = config.n_samples if n_samples is None else n_samples
    need = per_sample * n_samples
    free = shutil.disk_usage(out_dir).free
    if config.compression == "none" and need > free:
        raise InputError(
            f"out_dir: {out_dir} has {free / 2**30:.2f} GiB free; the simulation needs about "
            f"{need / 2**30:.2f} GiB ({n_samples} samples × {per_sample / 2**10:.0f} KiB); free space, "
            f"lower n_samples or set compression: gzip"
        )


def simulate(config, out_dir: str | Path, *, workers: int = 2, progress: bool = True,
             overwrite: bool = False, shards: tuple[int, int] | str | None = None) -> SimulationResult:
    """Simulate ``config.n_samples`` paired samples into chunked HDF5 shards plus a JSON manifest.

    Args:
        config: a :class:`SimulationConfig`, a mapping, or a YAML path (:func:`load_simulation_config`).
        out_dir: output folder; created if needed. It must not hold an earlier simulation unless
            ``overwrite`` (which deletes its shards and manifest first).
        workers: processes making shards (spawned, one thread each; each writes whole shards).
            ``1`` runs in this process. The output does not depend on it. A CUDA config always
            runs in this process. With ``workers > 1`` a script must call this under
            ``if __name__ == "__main__":`` (spawned workers import the main module).
        progress: show a rich progress bar (per batch with one worker, per shard with several).
        overwrite: replace an earlier simulation in ``out_dir``. With ``shards``: replace only
            the requested shards (and a manifest, which :func:`finalize` rewrites).
        shards: ``(start, stop)`` or ``"START:STOP"`` (0-based, stop exclusive): make only shards
            ``start … stop-1`` of the config's layout, each with its sidecar ``shard-NNNNN.json``,
            and no manifest; other shards already in ``out_dir`` are left alone. Call
            :func:`finalize` once every shard is made (on any machine).

    Returns:
        :class:`SimulationResult`.

    Raises:
        ConfigError: invalid config. InputError: bad arguments, not enough disk space (checked
        up front when uncompressed). :class:`~spectdl.data.shards.ShardWriteError`: a shard could
        not be written (its temporary file is removed; finished shards stay, no manifest is written).
    """
    cfg = load_simulation_config(config)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InputError(f"workers: expected a positive integer, found {workers!r}")
    out_dir = Path(out_dir)
    layout = shard_layout(cfg)
    if shards is not None:
        return _simulate_range(cfg, out_dir, _shard_range(shards, len(layout)), workers, progress, overwrite)
    _check_out_dir(out_dir, overwrite)
    shapes = _sample_shapes(cfg)
    _check_space(out_dir, cfg, shapes)
    workers = min(workers, len(layout))
    if torch.device(cfg.device).type != "cpu":
        workers = 1
    start = time.perf_counter()
    results = _map_shards(make_shard, _worker_shard, (cfg.to_dict(), str(out_dir)), cfg, out_dir, layout,
                          workers, progress, "simulating")
    manifest = _manifest(cfg, shapes, results)
    manifest_path = out_dir / MANIFEST_NAME
    atomic_write_bytes(manifest_path, json_bytes(manifest))
    shards = tuple(out_dir / entry["file"] for entry, _ in results)
    total_bytes = sum(p.stat().st_size for p in shards) + manifest_path.stat().st_size
    return SimulationResult(out_dir, manifest_path, cfg.n_samples, shards, total_bytes,
                            time.perf_counter() - start, workers, tuple(range(len(layout))))


# ------------------------------------------------------------------------------------------------
# Shard ranges (several machines) and finalize


def _shard_range(shards, n_shards: int) -> tuple[int, int]:
    """``(start, stop)`` from ``(start, stop)`` or ``"START:STOP"``, checked against ``n_shards``."""
    expected = f"expected START:STOP with 0 <= START < STOP <= {n_shards} (this config has {n_shards} shards; 0:{n_shards} makes all)"
    if isinstance(shards, str):
        parts = shards.split(":")
        try:
            if len(parts) != 2:
                raise ValueError
            start, stop = int(parts[0]), int(parts[1])
        except ValueError:
            raise InputError(f"--shards: {shards!r}; {expected}") from None
    else:
        try:
            start, stop = shards
        except (TypeError, ValueError):
            raise InputError(f"--shards: {shards!r}; {expected}") from None
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (start, stop)):
            raise InputError(f"--shards: {shards!r}; {expected}")
    if not 0 <= start < stop <= n_shards:
        raise InputError(f"--shards: {start}:{stop}; {expected}")
    return int(start), int(stop)


def sidecar_name(index: int) -> str:
    return f"shard-{index:05d}.json"


def _split_lists(config: SimulationConfig) -> dict[str, list[int]]:
    return {k: list(v) for k, v in split_ranges(config).items()}


def _origin(config: dict[str, Any], splits: Mapping[str, Any]) -> bytes:
    """What shards must share to be joined: their config and split ranges, as canonical bytes."""
    return json_bytes([config, splits])


def _versions() -> dict[str, str]:
    import spectdl

    return {"spectdl_version": getattr(spectdl, "__version__", "unknown"), "torch_version": torch.__version__,
            "forward_loop": forward_loop()}


_OLD_LOOP = "torch"  # manifests and sidecars written before the loop was recorded ran the torch loop


def _compiled_for(manifest: Mapping[str, Any], path) -> bool:
    """Whether to run the compiled loop to reproduce the bytes of ``manifest`` (read from ``path``)."""
    loop = manifest.get("forward_loop", _OLD_LOOP)
    if loop == "torch":
        return False
    if forward_loop() == "torch":
        raise SpectdlError(f"{path}: forward_loop is {loop!r}, but the compiled loop cannot run here (numba is "
                           f"not installed, or SPECTDL_NO_NUMBA is set); expected {loop} to regenerate bit for bit")
    return True


def _make_shard_with_sidecar(config: SimulationConfig, out_dir: str | Path, shard: int,
                             on_batch: Callable[[int], None] | None = None):
    """:func:`make_shard`, then its sidecar ``shard-NNNNN.json`` (written atomically after the shard)."""
    entry, records = make_shard(config, out_dir, shard, on_batch)
    # The split ranges too: they follow the order of config.splits, which the key-sorted JSON loses.
    sidecar = dict(format=SIDECAR_FORMAT, version=SIDECAR_VERSION, **_versions(), config=config.to_dict(),
                   splits=_split_lists(config),
                   n_shards=len(shard_layout(config)), shard=shard, entry=entry, records=records)
    atomic_write_bytes(Path(out_dir) / sidecar_name(shard), json_bytes(sidecar))
    return entry, records


def _worker_shard_sidecar(config_dict: dict[str, Any], out_dir: str, shard: int):
    return _make_shard_with_sidecar(SimulationConfig.from_dict(config_dict), out_dir, shard)


def _simulate_range(cfg: SimulationConfig, out_dir: Path, rng: tuple[int, int], workers: int, progress: bool,
                    overwrite: bool) -> SimulationResult:
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"out_dir: {out_dir} exists and is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    indices = list(range(*rng))
    manifest_path = out_dir / MANIFEST_NAME
    mine = [p for s in indices for p in (out_dir / shard_name(s), out_dir / sidecar_name(s)) if p.exists()]
    if not overwrite and (mine or manifest_path.exists()):
        first = manifest_path if manifest_path.exists() else mine[0]
        raise InputError(f"out_dir: {out_dir} already holds {first.name}; expected shards {rng[0]}:{rng[1]} not made "
                         f"yet, or pass --overwrite to remake them")
    # Shards made elsewhere in this folder must come from the same config.
    config_bytes = _origin(cfg.to_dict(), _split_lists(cfg))
    for p in sorted(out_dir.glob("shard-*.json")):
        if p in mine:
            continue
        other = _read_sidecar(p)
        if _origin(other["config"], other["splits"]) != config_bytes:
            raise InputError(f"out_dir: {out_dir} holds {p.name}, made from a different config; expected shards of "
                             f"one config per folder (use another folder)")
    layout = shard_layout(cfg)
    _check_space(out_dir, cfg, _sample_shapes(cfg), sum(layout[s][1] for s in indices))
    for p in mine + ([manifest_path] if manifest_path.exists() else []):
        p.unlink()
    for s in indices:  # temporaries of these shards left by a killed run (not those of other jobs)
        for p in out_dir.glob(f".{shard_name(s)}.*.tmp"):
            p.unlink(missing_ok=True)
    workers = 1 if torch.device(cfg.device).type != "cpu" else min(workers, len(indices))
    start = time.perf_counter()
    results = _map_shards(_make_shard_with_sidecar, _worker_shard_sidecar, (cfg.to_dict(), str(out_dir)), cfg,
                          out_dir, layout, workers, progress, "simulating", indices)
    paths = tuple(out_dir / entry["file"] for entry, _ in results)
    total = sum(p.stat().st_size for p in paths) + sum((out_dir / sidecar_name(s)).stat().st_size for s in indices)
    return SimulationResult(out_dir, manifest_path, sum(layout[s][1] for s in indices), paths, total,
                            time.perf_counter() - start, workers, tuple(indices))


def _read_sidecar(path: Path) -> dict[str, Any]:
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"finalize: {path} cannot be read as JSON ({exc}); remake that shard with --shards "
                         f"--overwrite") from None
    keys = ("config", "splits", "shard", "entry", "records", "spectdl_version", "torch_version")
    if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT or not all(k in data for k in keys):
        raise InputError(f"finalize: {path} is not a shard sidecar written by spectdl simulate --shards")
    if data.get("version") != SIDECAR_VERSION:
        raise InputError(f"finalize: {path} has version {data.get('version')!r}; expected {SIDECAR_VERSION}")
    return data


def _ranges_text(indices: list[int]) -> str:
    """``[0, 1, 2, 5]`` → ``"0:3, 5:6"`` (the --shards ranges that remake them)."""
    out, i = [], 0
    while i < len(indices):
        j = i
        while j + 1 < len(indices) and indices[j + 1] == indices[j] + 1:
            j += 1
        out.append(f"{indices[i]}:{indices[j] + 1}")
        i = j + 1
    return ", ".join(out)


def _names(paths: list[str], limit: int = 5) -> str:
    more = f" and {len(paths) - limit} more" if len(paths) > limit else ""
    return ", ".join(paths[:limit]) + more


def finalize(out_dir: str | Path) -> SimulationResult:
    """Write the manifest of a simulation made in shard ranges (``simulate(..., shards=...)``).

    Checks that the sidecars ``shard-NNNNN.json`` all carry the same config and versions, that every
    shard of the config's layout is present with its sidecar, and that each shard's SHA-256 equals
    the one recorded when it was made; then writes ``manifest.json`` (the bytes a one-run
    :func:`simulate` writes with the same versions) and removes the sidecars.

    Raises:
        InputError: no sidecars, a missing shard or sidecar, a corrupt shard (SHA-256 or size
        mismatch), sidecars of different configs or versions, or a folder already finalized; the
        message names the files and the ``--shards`` ranges that remake them.
    """
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise InputError(f"finalize: {out_dir} is not a folder; expected the -o folder of spectdl simulate --shards")
    manifest_path = out_dir / MANIFEST_NAME
    paths = sorted(out_dir.glob("shard-*.json"))
    if manifest_path.exists() and not paths:
        raise InputError(f"finalize: {out_dir} already holds {MANIFEST_NAME}; it is finalized")
    if not paths:
        raise InputError(f"finalize: {out_dir} holds no shard sidecars (shard-NNNNN.json); expected the output of "
                         f"spectdl simulate CONFIG -o {out_dir} --shards START:STOP")
    start = time.perf_counter()
    sidecars = {p: _read_sidecar(p) for p in paths}
    ref_path, ref = paths[0], sidecars[paths[0]]
    ref_config = _origin(ref["config"], ref["splits"])
    mixed = [p.name for p, d in sidecars.items() if _origin(d["config"], d["splits"]) != ref_config]
    if mixed:
        raise InputError(f"finalize: {_names(mixed)} made from a different config than {ref_path.name}; expected "
                         f"every shard of one config (remake them with that config and --overwrite)")
    def versions_of(d):
        return {"spectdl_version": d["spectdl_version"], "torch_version": d["torch_version"],
                "forward_loop": d.get("forward_loop", _OLD_LOOP)}

    versions = versions_of(ref)
    mixed = [f"{p.name} ({d['spectdl_version']}, torch {d['torch_version']}, loop {versions_of(d)['forward_loop']})"
             for p, d in sidecars.items() if versions_of(d) != versions]
    if mixed:
        raise InputError(f"finalize: {_names(mixed)} made with other versions than {ref_path.name} "
                         f"(spectdl {versions['spectdl_version']}, torch {versions['torch_version']}, forward loop "
                         f"{versions['forward_loop']}); expected one version of spectdl and torch, and one forward "
                         f"loop (numba or torch), for all shards (bytes may differ between them)")
    cfg = SimulationConfig.from_dict(ref["config"])
    layout = shard_layout(cfg)
    by_index: dict[int, dict[str, Any]] = {}
    for p, d in sidecars.items():
        s = d["shard"]
        if not isinstance(s, int) or not 0 <= s < len(layout) or p.name != sidecar_name(s):
            raise InputError(f"finalize: {p.name} describes shard {s!r}; expected shard-NNNNN.json for one of the "
                             f"{len(layout)} shards of its config")
        by_index[s] = d
    missing = [s for s in range(len(layout)) if s not in by_index or not (out_dir / shard_name(s)).is_file()]
    if missing:
        what = []
        for s in missing:
            if s not in by_index and not (out_dir / shard_name(s)).is_file():
                what.append(shard_name(s))
            elif s in by_index:
                what.append(f"{shard_name(s)} (its sidecar is there, the shard file is not)")
            else:
                what.append(f"{sidecar_name(s)} ({shard_name(s)} is there without it: the run that made it did not finish)")
        raise InputError(f"finalize: {out_dir} is missing {len(missing)} of {len(layout)} shards: {_names(what)}; "
                         f"make them with --shards {_ranges_text(missing)}")
    corrupt = []
    for s in range(len(layout)):
        entry, path = by_index[s]["entry"], out_dir / shard_name(s)
        first, count = layout[s]
        if (entry.get("file"), entry.get("first"), entry.get("count")) != (path.name, first, count):
            corrupt.append((s, f"{sidecar_name(s)} records {entry.get('file')} first {entry.get('first')} count "
                               f"{entry.get('count')}, expected first {first} count {count}"))
        else:
            sha = file_sha256(path)
            if sha != entry.get("sha256") or path.stat().st_size != entry.get("bytes"):
                corrupt.append((s, f"{path.name} (SHA-256 {sha[:12]}…, {path.stat().st_size} bytes; expected "
                                   f"{str(entry.get('sha256'))[:12]}…, {entry.get('bytes')} bytes from {sidecar_name(s)})"))
    if corrupt:
        raise InputError(f"finalize: {len(corrupt)} corrupt shards in {out_dir}: {_names([w for _, w in corrupt])}; "
                         f"remake them with --shards {_ranges_text([s for s, _ in corrupt])} --overwrite")
    results = [(by_index[s]["entry"], by_index[s]["records"]) for s in range(len(layout))]
    ranges = {k: tuple(v) for k, v in ref["splits"].items()}
    manifest = _manifest(cfg, _sample_shapes(cfg), results, versions, ranges)
    atomic_write_bytes(manifest_path, json_bytes(manifest))
    for p in paths:
        p.unlink()
    shards = tuple(out_dir / shard_name(s) for s in range(len(layout)))
    total = sum(p.stat().st_size for p in shards) + manifest_path.stat().st_size
    return SimulationResult(out_dir, manifest_path, cfg.n_samples, shards, total, time.perf_counter() - start, 1, ())


def _map_shards(make: Callable, worker: Callable, worker_args: tuple, cfg: SimulationConfig, out_dir: Path,
                layout: list[tuple[int, int]], workers: int, progress: bool, label: str,
                indices: list[int] | None = None) -> list:
    """``make(cfg, out_dir, shard, on_batch)`` for every shard of ``indices`` (default: all), here or in
    ``workers`` spawned processes (``worker(*worker_args, shard)``); the first failure cancels the
    rest and is raised. Results in the order of ``indices``."""
    indices = list(range(len(layout))) if indices is None else list(indices)
    results: dict[int, Any] = {}
    with _progress_bar(progress, sum(layout[s][1] for s in indices), label) as advance:
        if workers == 1:
            for s in indices:
                results[s] = make(cfg, out_dir, s, on_batch=advance)
            return [results[s] for s in indices]
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init) as pool:
            futures = {pool.submit(worker, *worker_args, s): s for s in indices}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for fut in done:
                    exc = fut.exception()
                    if exc is not None:
                        for other in pending:
                            other.cancel()
                        raise exc
                    s = futures[fut]
                    results[s] = fut.result()
                    advance(layout[s][1])
    return [results[s] for s in indices]


# ------------------------------------------------------------------------------------------------
# Reconstruction of an existing simulation


def _reconstruct_shard(config: SimulationConfig, out_dir: Path, shard: int, source_dir: Path,
                       on_batch: Callable[[int], None] | None = None):
    """Shard ``shard`` of ``source_dir`` with ``recon_<level>`` added, batch by batch as
    :func:`simulate_batch` would have made it (same batches, same projector, same OSEM)."""
    first, count = shard_layout(config)[shard]
    path = Path(out_dir) / shard_name(shard)
    device = torch.device(config.device)
    levels = sorted(config.counts.levels.items())
    attrs = dict(shard=shard, first_index=first, n_samples=count, phantom=config.phantom, seed=config.seed)
    with single_thread(), torch.no_grad(), open_shard(source_dir / shard_name(shard)) as src, \
            ShardWriter(path, count, config.compression, attrs) as writer:
        keys = _h5_keys(src)
        proj = _projector(config, _grid_of(config), device)
        for row, n in batch_layout(config, count):
            block = {k: np.asarray(src[k][row:row + n]) for k in keys}
            mu = torch.from_numpy(block["mu_per_cm"]).to(device) if config.attenuation else None
            proj.set_mu_map(mu)
            scales = torch.from_numpy(block["scale"]).to(torch.float64)
            for name, f in levels:
                counts = torch.from_numpy(block[f"counts_{name}"]).to(device)
                block[f"recon_{name}"] = _numpy(reconstruct_batch(config, proj, counts, f, scales))
            proj.set_mu_map(None)
            writer.write(row, block)
            if on_batch is not None:
                on_batch(n)
        sha = writer.commit()
    return dict(file=path.name, first=first, count=count, sha256=sha, bytes=path.stat().st_size), None


def _grid_of(config: SimulationConfig):
    """The grid of the stored data and of reconstruction (the field's with ``fov``), or the
    phantom's default grid when the config gives none."""
    return config.data_grid() or _render(config, 1, 0, torch.device("cpu")).grid


def _h5_keys(f) -> list[str]:
    out: list[str] = []
    f.visititems(lambda name, obj: out.append(name) if hasattr(obj, "shape") else None)
    return out


def _worker_reconstruct(config_dict: dict[str, Any], out_dir: str, source_dir: str, shard: int):
    return _reconstruct_shard(SimulationConfig.from_dict(config_dict), Path(out_dir), shard, Path(source_dir))


def reconstruct_simulation(source: str | Path, out_dir: str | Path, recon, *, workers: int = 2,
                           progress: bool = True, overwrite: bool = False) -> SimulationResult:
    """A copy of the simulation ``source`` with the OSEM reconstruction of every count level added.

    The result is exactly what :func:`simulate` writes for the source's config with ``recon`` set
    (same shards, same bytes for the stored keys, and ``recon_<level>`` from the same batches), so
    :func:`regenerate` and :class:`~spectdl.data.SimulatedDataset` read it like any simulation.
    This is the reconstruction stage of the studies: projections are simulated once and the
    (much slower) OSEM runs in its own resumable step.

    Args:
        source: a simulation folder (or its manifest) that stores ``counts`` and, with attenuation,
            ``mu_per_cm``.
        out_dir: the new folder; must differ from ``source`` and not lie inside it.
        recon: a :class:`~spectdl.data.config.ReconConfig` or its mapping.
    """
    manifest = load_manifest_json(source)
    src_dir = Path(manifest["_path"]).parent
    out_dir = Path(out_dir)
    if out_dir.resolve() == src_dir.resolve() or src_dir.resolve() in out_dir.resolve().parents:
        raise InputError(f"out_dir: {out_dir} is, or lies inside, the source simulation {src_dir}; choose another folder")
    recon_dict = recon.to_dict() if hasattr(recon, "to_dict") else dict(recon)
    cfg = SimulationConfig.from_dict(dict(manifest["config"], recon=recon_dict))
    if cfg.kind == "planar":
        raise InputError(f"source: {src_dir} holds planar images; there is nothing to reconstruct")
    missing = [k for k in [f"counts_{n}" for n in cfg.counts.levels] + (["mu_per_cm"] if cfg.attenuation else [])
               if k not in manifest["keys"]]
    if missing:
        raise InputError(f"source: {src_dir} does not store {missing}; simulate with store including counts and mu_per_cm")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InputError(f"workers: expected a positive integer, found {workers!r}")
    _check_out_dir(out_dir, overwrite)
    layout = shard_layout(cfg)
    workers = 1 if torch.device(cfg.device).type != "cpu" else min(workers, len(layout))
    start = time.perf_counter()
    results = _map_shards(lambda c, o, s, on_batch=None: _reconstruct_shard(c, o, s, src_dir, on_batch),
                          _worker_reconstruct, (cfg.to_dict(), str(out_dir), str(src_dir)), cfg, out_dir,
                          layout, workers, progress, "reconstructing")
    shapes = {k: (v["shape"], v["dtype"]) for k, v in manifest["keys"].items()}
    image = shapes.get("activity", shapes.get("mu_per_cm"))
    for name in cfg.counts.levels:
        shapes[f"recon_{name}"] = (list(image[0]), cfg.dtype)
    new = {k: v for k, v in manifest.items() if k != "_path"}
    new["config"] = cfg.to_dict()
    new["keys"] = {k: {"shape": s, "dtype": d} for k, (s, d) in shapes.items()}
    new["shards"] = [entry for entry, _ in results]
    manifest_path = out_dir / MANIFEST_NAME
    atomic_write_bytes(manifest_path, json_bytes(new))
    shards = tuple(out_dir / entry["file"] for entry in new["shards"])
    total = sum(p.stat().st_size for p in shards) + manifest_path.stat().st_size
    return SimulationResult(out_dir, manifest_path, cfg.n_samples, shards, total, time.perf_counter() - start, workers)


class _progress_bar:
    """Context manager yielding ``advance(n)``; a no-op without ``progress``."""

    def __init__(self, enabled: bool, total: int, label: str = "simulating"):
        self.enabled, self.total, self._bar, self.label = enabled, total, None, label

    def __enter__(self) -> Callable[[int], None]:
        if not self.enabled:
            return lambda n: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._bar = Progress(TextColumn(self.label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        self._bar.__enter__()
        task = self._bar.add_task("simulate", total=self.total)
        return lambda n: self._bar.advance(task, n)

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)


def _manifest(cfg: SimulationConfig, shapes, results, versions: Mapping[str, str] | None = None,
              ranges: Mapping[str, tuple[int, int]] | None = None) -> dict[str, Any]:
    ranges = split_ranges(cfg) if ranges is None else ranges
    samples = []
    for _, records in results:
        samples.extend(records)
    samples.sort(key=lambda r: r["index"])
    for r in samples:
        r["split"] = next(name for name, (a, b) in ranges.items() if a <= r["index"] < b)
    versions = _versions() if versions is None else versions
    return {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "spectdl_version": versions["spectdl_version"],
        "torch_version": versions["torch_version"],
        "forward_loop": versions.get("forward_loop", _OLD_LOOP),
        "config": cfg.to_dict(),
        "keys": {k: {"shape": s, "dtype": d} for k, (s, d) in shapes.items()},
        "shards": [entry for entry, _ in results],
        "splits": {k: list(v) for k, v in ranges.items()},
        "samples": samples,
    }


# ------------------------------------------------------------------------------------------------
# Reading back and regenerating


def _manifest_path(source: str | Path) -> Path:
    p = Path(source)
    return p / MANIFEST_NAME if p.is_dir() else p


def load_manifest_json(source: str | Path) -> dict[str, Any]:
    """The manifest of a simulation (``out_dir`` or the ``manifest.json`` path), checked for its format."""
    import json

    path = _manifest_path(source)
    if not path.is_file():
        raise InputError(f"manifest: {path} not found; expected the manifest.json written by spectdl.data.simulate")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"manifest: {path} cannot be read as JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        raise InputError(f"manifest: {path} is not a spectdl simulation manifest (format {data.get('format')!r})")
    if data.get("version") != MANIFEST_VERSION:
        raise InputError(f"manifest: {path} has version {data.get('version')!r}; expected {MANIFEST_VERSION}")
    data["_path"] = str(path)
    return data


def _sample_record(manifest: Mapping[str, Any], index: int) -> dict[str, Any]:
    n = len(manifest["samples"])
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < n:
        raise InputError(f"index: expected an integer in [0, {n}), found {index!r}")
    record = manifest["samples"][int(index)]
    if record["index"] != index:  # written sorted by index; guard against an edited file
        raise InputError(f"manifest: sample {index} is listed as {record['index']}; the manifest was modified")
    return record


def read_sample(source: str | Path, index: int, keys=None) -> dict[str, torch.Tensor]:
    """Stored sample ``index`` of a simulation: ``{key: tensor [C, ...]}`` in the stored dtypes."""
    manifest = load_manifest_json(source)
    record = _sample_record(manifest, index)
    folder = Path(manifest["_path"]).parent
    entry = manifest["shards"][record["shard"]]
    with open_shard(folder / entry["file"]) as f:
        names = list(manifest["keys"]) if keys is None else list(keys)
        return {k: torch.from_numpy(np.asarray(f[k][record["row"]])) for k in names}


def regenerate(manifest_path: str | Path, index: int, *, device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
    """Rebuild sample ``index`` from the manifest: ``{key: tensor [C, ...]}`` as :func:`read_sample` returns it.

    The sample's whole batch is re-made (same seeds, same batch composition) and its row returned,
    so on the CPU with the recorded torch version and forward loop (``forward_loop``: numba or torch)
    the result equals the stored sample bit for bit.
    """
    manifest = load_manifest_json(manifest_path)
    record = _sample_record(manifest, index)
    cfg = SimulationConfig.from_dict(manifest["config"])
    if device is not None:
        cfg = SimulationConfig.from_dict(dict(manifest["config"], device=str(torch.device(device))))
    first, count = shard_layout(cfg)[record["shard"]]
    row0, n = batch_layout(cfg, count)[record["batch"]]
    compiled = _compiled_for(manifest, manifest_path)
    with single_thread(), torch.no_grad():
        out = simulate_batch(cfg, record["shard"], record["batch"], first + row0, n, cfg.device, compiled=compiled)
    b = record["row"] - row0
    result = {}
    for key, spec in manifest["keys"].items():
        t = out["arrays"][key][b].detach().cpu()
        result[key] = t.to(getattr(torch, spec["dtype"]))
    return result


def verify_shards(source: str | Path) -> list[str]:
    """Shards whose SHA-256 differs from the manifest's (empty when all are intact)."""
    manifest = load_manifest_json(source)
    folder = Path(manifest["_path"]).parent
    bad = []
    for entry in manifest["shards"]:
        p = folder / entry["file"]
        if not p.is_file() or file_sha256(p) != entry["sha256"]:
            bad.append(entry["file"])
    return bad



def sample_phantom(source: str | Path, index: int):
    """The phantom of sample ``index`` re-rendered from its recorded seed (with its full ``info``:
    sphere centres, lesion lists, ... that the manifest keeps only as scalars)."""
    manifest = load_manifest_json(source)
    record = _sample_record(manifest, index)
    cfg = SimulationConfig.from_dict(manifest["config"])
    with torch.no_grad():
        return crop_to_fov(cfg, _render(cfg, 1, int(record["phantom_seed"]), torch.device("cpu")))


def simulation_projector(source: str | Path, mu_per_cm: torch.Tensor | None = None, device: str = "cpu"):
    """The projector a simulation used (its grid, orbit and collimator), with ``mu_per_cm`` set
    (``[B, 1, *grid]``; ``None``: no attenuation). For forward projecting images of its samples."""
    manifest = load_manifest_json(source)
    cfg = SimulationConfig.from_dict(manifest["config"])
    # A projector of its own (not the simulation's shared one), keeping every view's attenuation:
    # its callers (OSEM, consistency) project the same μ map many times.
    proj = _new_projector(cfg, _grid_of(cfg), torch.device(device), cache_attenuation=True)
    proj.set_mu_map(mu_per_cm if cfg.attenuation else None)
    return proj
