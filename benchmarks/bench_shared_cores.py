"""Slowdown of the projector and OSEM when another process keeps one core busy.

Usage: ``python benchmarks/bench_shared_cores.py [--size 64] [--views 120] [--reps 3]``

For each variant, a fresh subprocess times the forward projection, the back projection and one
OSEM iteration (4 subsets) of a ``size³`` object (LEHR, attenuation, 120 views) first on an idle
machine and then while a busy-loop process pinned to core 0 (``os.sched_setaffinity``) runs beside
it. Variants: torch's default threads (one per core), one thread (``torch.set_num_threads(1)``),
OpenMP's passive wait (``OMP_WAIT_POLICY=PASSIVE``, set before the subprocess starts: a
waiting thread sleeps instead of spinning), and the depth blur in torch ops instead of its compiled
loop (``SPECTDL_NO_NUMBA=1``: the projector of before 2026-12-06). (``GOMP_SPINCOUNT=10000`` or ``100000`` measured worse
than the default under load here: 3.3–12× slower.) The table gives the median time of each step idle and
busy, the busy/idle slowdown, and each time relative to the default variant's idle time in the
same run; the last line is the peak resident memory of the largest subprocess.

Why: OpenMP threads spin at the end of every parallel region until all have arrived; with one core
taken, the thread that shares it waits for the scheduler, and a projector made of many short
parallel regions (one per view) pays that at every region.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

VARIANTS = {"default threads": ({}, None), "1 thread": ({}, 1),
            "OMP_WAIT_POLICY=PASSIVE": ({"OMP_WAIT_POLICY": "PASSIVE"}, None),
            # the depth blur in torch ops, as before the compiled blur (one parallel region per op)
            "torch blur (SPECTDL_NO_NUMBA=1)": ({"SPECTDL_NO_NUMBA": "1"}, None)}


def _child(size: int, views: int, reps: int, threads: int | None) -> None:
    import multiprocessing as mp
    import resource
    import statistics
    import time

    import torch

    from spectdl.geometry import Collimator, Orbit, VoxelGrid
    from spectdl.physics import SpectProjector
    from spectdl.recon import osem

    if threads:
        torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1, 1, size, size, size, generator=gen)
    proj = SpectProjector(VoxelGrid((size,) * 3, 400.0 / size), Orbit.circular(views, 220.0),
                          Collimator.preset("LEHR"), torch.full_like(x, 0.15))
    y = proj.A(x)

    def timed(fn):
        fn()
        out = []
        for _ in range(reps):
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
        return statistics.median(out)

    steps = {"forward": lambda: proj.A(x), "adjoint": lambda: proj.A_adjoint(y),
             "OSEM iteration": lambda: osem(y, proj, 1, 4)}
    result = {"idle": {k: timed(f) for k, f in steps.items()}}
    busy = mp.get_context("fork").Process(target=_busy, daemon=True)
    busy.start()
    time.sleep(0.5)
    try:
        result["busy"] = {k: timed(f) for k, f in steps.items()}
    finally:
        busy.terminate()
    result["threads"] = torch.get_num_threads()
    result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps(result))


def _busy() -> None:
    os.sched_setaffinity(0, {0})
    while True:
        pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--views", type=int, default=120)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--child", type=str, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child is not None:
        _child(a.size, a.views, a.reps, None if a.child == "none" else int(a.child))
        return
    results = {}
    for name, (env, threads) in VARIANTS.items():
        out = subprocess.run([sys.executable, __file__, "--size", str(a.size), "--views", str(a.views), "--reps",
                              str(a.reps), "--child", "none" if threads is None else str(threads)],
                             env={**os.environ, **env}, capture_output=True, text=True, check=True)
        results[name] = json.loads(out.stdout.strip().splitlines()[-1])
    base = results["default threads"]["idle"]
    print(f"{a.size}³, {a.views} views, LEHR, attenuation; {os.cpu_count()} cores; busy = one busy-loop process "
          "on core 0; median of", a.reps)
    print("| variant | threads | step | idle s | busy s | busy / idle | idle / default idle | busy / default idle |")
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        for step, t in r["idle"].items():
            b = r["busy"][step]
            print(f"| {name} | {r['threads']} | {step} | {t:.3f} | {b:.3f} | {b / t:.2f} | {t / base[step]:.2f} | "
                  f"{b / base[step]:.2f} |")
    print(f"peak memory {max(r['peak_mb'] for r in results.values()):.0f} MB (largest subprocess)")


if __name__ == "__main__":
    main()
