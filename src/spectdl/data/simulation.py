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
from spectdl.noise import poisson, thin

__all__ = ["SimulationResult", "load_manifest_json", "read_sample", "reconstruct_simulation", "regenerate", "simulate",
           "verify_shards"]

MANIFEST_FORMAT = "spectdl-simulation"
MANIFEST_VERSION = 1
MANIFEST_NAME = "manifest.json"

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
    """

    out_dir: Path
    manifest_path: Path
    n_samples: int
    shards: tuple[Path, ...]
    bytes_written: int
    seconds: float
    workers: int

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


def _projector(config: SimulationConfig, grid, device: torch.device):
    o = config.orbit
    key = (grid, o.n_angles, o.radius_mm, o.arc_deg, o.start_deg, o.direction, config.collimator,
           config.recon is not None, str(device))
    proj = _PROJECTORS.get(key)
    if proj is None:
        proj = _new_projector(config, grid, device, cache_attenuation=config.recon is not None)
        _PROJECTORS.clear()  # one geometry per run; keep only the latest
        _PROJECTORS[key] = proj
    return proj


def _new_projector(config: SimulationConfig, grid, device: torch.device, *, cache_attenuation: bool):
    from spectdl.geometry import Collimator, Orbit
    from spectdl.physics import SpectProjector

    o = config.orbit
    radius = o.radius_mm if o.radius_mm is not None else grid.extent_mm[0] / 2.0
    orbit = Orbit.circular(o.n_angles, radius, o.arc_deg, o.start_deg, o.direction)
    coll = None if config.collimator is None else Collimator.preset(config.collimator)
    return SpectProjector(grid, orbit, coll, check_input=False, cache_attenuation=cache_attenuation)


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
                   device: torch.device | str = "cpu") -> dict[str, Any]:
    """Make one batch: ``{"arrays": {key: tensor [count, C, ...]}, "records": [...], "params": {...}}``.

    ``first_index`` is the global index of the batch's first sample. Deterministic given the
    arguments (see the module docstring for the seeds).
    """
    device = torch.device(device)
    base_seed = mix_seed(config.seed, 1, shard, batch)
    ph = _render(config, count, base_seed, device)
    arrays: dict[str, torch.Tensor] = {}
    store = set(config.store)
    if config.kind == "planar":
        clean = torch.cat([ph.anterior, ph.posterior], 1)
        proj = None
        if "lesion_mask" in store:
            arrays["lesion_mask"] = ph.lesion_mask.to(torch.uint8)
    else:
        proj = _projector(config, ph.grid, device)
        proj.set_mu_map(ph.mu_per_cm if config.attenuation else None)
        clean = proj.A(ph.activity)
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
        total = lo if hi == lo else math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))
        if not float(sums[b]) > 0:
            raise SpectdlError(f"sample {index}: the noise-free projections sum to 0; the phantom has no visible activity")
        scale = total / float(sums[b])
        ybar = clean[b] * scale
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
    return {"arrays": arrays, "records": records, "params": _per_sample_params(ph.info, count)}


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
        grid = ph.grid.shape
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
    old = sorted(out_dir.glob("shard-*.h5")) + ([out_dir / MANIFEST_NAME] if (out_dir / MANIFEST_NAME).exists() else [])
    if old and not overwrite:
        raise InputError(
            f"out_dir: {out_dir} already holds a simulation ({len(old)} files, e.g. {old[0].name}); "
            f"expected an empty folder, or pass overwrite=True"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    for p in old:
        p.unlink()
    remove_stale_temporaries(out_dir)


def _check_space(out_dir: Path, config: SimulationConfig, shapes) -> None:
    per_sample = sum(math.prod(s) * np.dtype(d).itemsize for s, d in shapes.values())
    need = per_sample * config.n_samples
    free = shutil.disk_usage(out_dir).free
    if config.compression == "none" and need > free:
        raise InputError(
            f"out_dir: {out_dir} has {free / 2**30:.2f} GiB free; the simulation needs about "
            f"{need / 2**30:.2f} GiB ({config.n_samples} samples × {per_sample / 2**10:.0f} KiB); free space, "
            f"lower n_samples or set compression: gzip"
        )


def simulate(config, out_dir: str | Path, *, workers: int = 2, progress: bool = True,
             overwrite: bool = False) -> SimulationResult:
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
        overwrite: replace an earlier simulation in ``out_dir``.

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
    _check_out_dir(out_dir, overwrite)
    shapes = _sample_shapes(cfg)
    _check_space(out_dir, cfg, shapes)
    layout = shard_layout(cfg)
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
                            time.perf_counter() - start, workers)


def _map_shards(make: Callable, worker: Callable, worker_args: tuple, cfg: SimulationConfig, out_dir: Path,
                layout: list[tuple[int, int]], workers: int, progress: bool, label: str) -> list:
    """``make(cfg, out_dir, shard, on_batch)`` for every shard, here or in ``workers`` spawned processes
    (``worker(*worker_args, shard)``); the first failure cancels the rest and is raised."""
    results: list = [None] * len(layout)
    with _progress_bar(progress, cfg.n_samples, label) as advance:
        if workers == 1:
            for s in range(len(layout)):
                results[s] = make(cfg, out_dir, s, on_batch=advance)
            return results
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init) as pool:
            futures = {pool.submit(worker, *worker_args, s): s for s in range(len(layout))}
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
    return results


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
    """The config's grid, or the phantom's default grid when the config gives none."""
    return config.voxel_grid() or _render(config, 1, 0, torch.device("cpu")).grid


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


def _manifest(cfg: SimulationConfig, shapes, results) -> dict[str, Any]:
    ranges = split_ranges(cfg)
    samples = []
    for _, records in results:
        samples.extend(records)
    samples.sort(key=lambda r: r["index"])
    for r in samples:
        r["split"] = next(name for name, (a, b) in ranges.items() if a <= r["index"] < b)
    import spectdl

    return {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "spectdl_version": getattr(spectdl, "__version__", "unknown"),
        "torch_version": torch.__version__,
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
    so on the CPU with the recorded torch version the result equals the stored sample bit for bit.
    """
    manifest = load_manifest_json(manifest_path)
    record = _sample_record(manifest, index)
    cfg = SimulationConfig.from_dict(manifest["config"])
    if device is not None:
        cfg = SimulationConfig.from_dict(dict(manifest["config"], device=str(torch.device(device))))
    first, count = shard_layout(cfg)[record["shard"]]
    row0, n = batch_layout(cfg, count)[record["batch"]]
    with single_thread(), torch.no_grad():
        out = simulate_batch(cfg, record["shard"], record["batch"], first + row0, n, cfg.device)
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
        return _render(cfg, 1, int(record["phantom_seed"]), torch.device("cpu"))


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
