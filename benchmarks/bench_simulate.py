"""Simulation throughput: 2-D brain phantoms (128×128, 120 views, LEHR, attenuation), with ratios.

Usage: ``python benchmarks/bench_simulate.py [--samples 256] [--batch-sizes 16 32] [--workers 2]
[--recon 4x10] [--compression gzip] [--device cpu]``

For each batch size the simulation is timed in this process with the per-view projector of before
issue 14 (:class:`spectdl.physics.reference.ReferenceProjector`, ``path = reference``: the baseline
of the ratio column), with the fused path's depth loop in torch (``torch-loop``, the path before the
compiled loop of :mod:`spectdl.physics._compiled`), then with today's projector in this process
(``workers=1``) and with ``--workers`` spawned processes. Each is run at two sizes, one batch per worker
and ``--samples``: the small run measures the start-up (imports, projector set-up), the difference
the steady time per sample, and 20,000 samples are extrapolated as start-up + 20,000 × that time.
Since other programs may share the cores, the CPU time per sample (this process plus its finished
worker processes) is reported too, with the time 20,000 samples would take if each worker had a
core to itself. Disk use is extrapolated linearly.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

from spectdl.data import simulate

TARGET = 20_000


def config(samples: int, batch_size: int, recon: str | None, compression: str, device: str) -> dict:
    cfg = dict(
        phantom="brain2d",
        grid={"shape": [128, 128], "voxel_size_mm": 2.0},
        n_samples=samples,
        seed=0,
        batch_size=batch_size,
        shard_size=max(batch_size, samples // 4),  # several shards, so that every worker has some
        orbit={"n_angles": 120},
        collimator="LEHR",
        counts={"total": [2.0e5, 1.0e6], "levels": {"full": 1.0, "low": 1.0 / 7.0}},
        store=["activity", "mu_per_cm", "labels", "counts"],
        compression=compression,
        device=device,
    )
    if recon:
        iterations, subsets = (int(v) for v in recon.lower().split("x"))
        cfg["recon"] = {"iterations": iterations, "subsets": subsets}
    return cfg


def _cpu_seconds() -> float:
    """CPU time of this process plus its finished children (the pool's workers, once shut down)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


@contextlib.contextmanager
def projector_class(path: str):
    """Make :func:`simulate` (in this process) build the projector of ``path``: ``reference`` (the
    per-view projector), ``torch-loop`` (the fused path with its depth loop in torch, as before the
    compiled loop) or ``fused`` (today's)."""
    import spectdl.physics as physics
    from spectdl.data import simulation
    from spectdl.physics.reference import ReferenceProjector

    saved, saved_loop = physics.SpectProjector, physics.SpectProjector.compiled_loop
    simulation._PROJECTORS.clear()
    if path == "reference":
        physics.SpectProjector = ReferenceProjector
    elif path == "torch-loop":
        physics.SpectProjector.compiled_loop = False
    try:
        yield
    finally:
        physics.SpectProjector = saved
        saved.compiled_loop = saved_loop
        simulation._PROJECTORS.clear()


def run(cfg: dict, workers: int, path: str = "fused") -> tuple[float, float, int]:
    """``(wall seconds, CPU seconds, bytes written)`` of one simulation into a temporary folder."""
    folder = Path(tempfile.mkdtemp(prefix="bench-sim-"))
    try:
        with projector_class(path):
            c0, t0 = _cpu_seconds(), time.perf_counter()
            res = simulate(cfg, folder / "run", workers=workers, progress=False)
            return time.perf_counter() - t0, _cpu_seconds() - c0, res.bytes_written
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def phantom_rate(batch_size: int = 64, repeats: int = 3) -> tuple[float, float]:
    """``(wall ms, CPU ms)`` per brain2d phantom (the best of ``repeats`` batches); moved here from the
    test suite, where a time limit failed on a loaded machine."""
    from spectdl.phantoms import brain2d

    brain2d(batch_size=batch_size, seed=0)
    wall = cpu = float("inf")
    for rep in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        brain2d(batch_size=batch_size, seed=rep + 1)
        wall = min(wall, (time.perf_counter() - t0) / batch_size)
        cpu = min(cpu, (time.process_time() - c0) / batch_size)
    return 1000 * wall, 1000 * cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 32])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--recon", default=None, help="OSEM iterations x subsets, e.g. 4x10 (default: none)")
    ap.add_argument("--compression", default="gzip", choices=["none", "gzip", "lzf"])
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    print(f"brain2d 128×128, 120 views, LEHR + attenuation, 2 count levels, recon={args.recon}, "
          f"compression={args.compression}, device={args.device}, {args.samples} samples per run")
    print(f"load average before the runs: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores "
          f"(other programs on the same cores slow the wall times)")
    wall_ms, cpu_ms = phantom_rate()
    print(f"phantoms alone (brain2d, batch 64): {wall_ms:.2f} ms wall, {cpu_ms:.2f} ms CPU per phantom; "
          f"20,000 in {20000 * wall_ms / 1000:.1f} s")
    header = (f"{'path':>10} {'batch':>5} {'workers':>7} {'wall s':>7} {'samples/s':>9} {'ratio':>6} {'start-up s':>10} "
              f"{'20k (wall)':>11} {'cpu ms/sample':>13} {'20k (idle)':>11} {'20k disk':>9}")
    print(header)
    print("-" * len(header))
    for bs in args.batch_sizes:
        base = None
        paths = [("reference", 1), ("torch-loop", 1), ("fused", 1)] + ([("fused", args.workers)] if args.workers > 1 else [])
        for path, workers in paths:
            # Two sizes: one batch per worker (start-up: imports, projector set-up, first batch) and
            # the full run; the difference gives the steady cost per sample.
            small_n = bs * workers
            small_cfg = config(small_n, bs, args.recon, args.compression, args.device)
            small_cfg["shard_size"] = bs
            t_small, c_small, _ = run(small_cfg, workers, path)
            seconds, cpu, size = run(config(args.samples, bs, args.recon, args.compression, args.device), workers, path)
            base = seconds if base is None else base
            extra = max(args.samples - small_n, 1)
            wall_per = max(seconds - t_small, 0.0) / extra
            cpu_per = max(cpu - c_small, 0.0) / extra
            startup = max(t_small - small_n * wall_per, 0.0)
            est_wall = startup + TARGET * wall_per
            # On an otherwise idle machine each worker has a core: n · CPU per sample / workers.
            est_idle = startup + TARGET * cpu_per / min(workers, os.cpu_count() or 1)
            disk = size / args.samples * TARGET / 2**30
            print(f"{path:>10} {bs:>5} {workers:>7} {seconds:>7.1f} {args.samples / seconds:>9.1f} {base / seconds:>5.2f}× "
                  f"{startup:>10.1f} {est_wall / 60:>7.1f} min {1000 * cpu_per:>13.1f} {est_idle / 60:>7.1f} min "
                  f"{disk:>6.1f} GiB")
    import resource

    # Workers are child processes: the largest of them, beside this process (the one-worker runs).
    print(f"peak memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB resident in this "
          f"process, {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.0f} MB in the largest worker")


if __name__ == "__main__":
    main()
