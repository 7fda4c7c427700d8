"""Peak memory and speed of the attenuation-cache modes, per projector, with the peer beside them.

Usage::

    python benchmarks/bench_memory.py [--n 128] [--repeats 2] [--peer] [--real] [--real-iters 2]

Every case runs in a fresh Python process of its own, so that its peak resident set
(``ru_maxrss``) is that projector's alone and not the high-water mark of the cases before it:

* ``full``, ``half``, ``recompute``: spectdl at ``n³`` × 120 views (LEHR, an elliptic water body,
  4.42 mm voxels, R = 250 mm) with the attenuation factors cached in float32, cached in float16,
  or computed again for every view (``SpectProjector(attenuation_cache_mb=…, over_budget=…)``);
* ``peer``: PyTomography 3.4 on the same problem (``--peer``; ``pip install pytomography==3.4.0``);
* ``real-half``, ``real-recompute``: a real-size reconstruction, 256×256×200 at 2.21 mm and 120
  views, OSEM ``--real-iters`` × 8 subsets from a flat start (``--real``).

Each prints the resident set after building its inputs (``base``), the peak, and the median wall
time of forward (first call, then again), back-projection and one OSEM iteration of 8 subsets;
ratios are against the ``full`` mode measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_physics import body_mu, pytomography_system, timeit  # noqa: E402

from spectdl.geometry import Collimator, Orbit, VoxelGrid  # noqa: E402
from spectdl.physics import SpectProjector  # noqa: E402
from spectdl.recon import osem  # noqa: E402

MODES = {"full": (1e9, "half"), "half": (None, "half"), "recompute": (0.0, "recompute")}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _problem(shape, voxel_mm):
    grid = VoxelGrid(shape, voxel_mm)
    orbit = Orbit.circular(120, 250.0)
    coll = Collimator.preset("LEHR")
    mu, body = body_mu(grid, torch.device("cpu"), torch.float32)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand((1, 1) + grid.shape, generator=gen) * body[None, None, :, :, None]
    return grid, orbit, coll, mu, x


def _ours(grid, orbit, coll, mu, mode):
    budget, over = MODES[mode]
    if budget is None:  # just below the float32 cache, so that the float16 one is taken
        budget = 0.75 * SpectProjector(grid, orbit, coll, mu).attenuation_cache_bytes() / 2**20
    P = SpectProjector(grid, orbit, coll, mu, attenuation_cache_mb=budget, over_budget=over)
    assert P.attenuation_storage() == mode, (P.attenuation_storage(), mode)
    return P


def _cache_mb(P: SpectProjector) -> float:
    """The memory the projector's attenuation cache holds as its budget has it stored (0 when none)."""
    dtype = {"full": torch.float32, "half": torch.float16}.get(P.attenuation_storage())
    return 0.0 if dtype is None else P.attenuation_cache_bytes(dtype) / 2**20


def worker(case: str, n: int, repeats: int, real_iters: int) -> dict:
    torch.set_num_threads(os.cpu_count() or 1)
    cpu = torch.device("cpu")
    if case.startswith("real-"):
        grid, orbit, coll, mu, x = _problem((256, 256, 200), 2.21)
        base = _rss_mb()
        P = _ours(grid, orbit, coll, mu, case[5:])
        t0 = time.perf_counter()
        y = P(x)
        t_fwd = time.perf_counter() - t0
        t0 = time.perf_counter()
        img = osem(y, P, real_iters, 8)
        t_osem = time.perf_counter() - t0
        rel = float((P(img) - y).norm() / y.norm())
        return {"case": case, "base_mb": base, "peak_mb": _rss_mb(), "forward_first": t_fwd,
                "recon": t_osem, "iters": real_iters, "fit_rel_l2": rel, "cache_mb": _cache_mb(P)}
    grid, orbit, coll, mu, x = _problem((n, n, n), 4.42)
    base = _rss_mb()
    if case == "peer":
        import pytomography
        from pytomography.algorithms import OSEM
        from pytomography.likelihoods import PoissonLogLikelihood

        pytomography.device = cpu
        xp = x[0, 0].clone()
        t_first = timeit(lambda: pytomography_system(grid, orbit, coll, mu).forward(xp), 1, cpu)
        system = pytomography_system(grid, orbit, coll, mu)
        yp = system.forward(xp)
        t_fwd = timeit(lambda: system.forward(xp), repeats, cpu)
        t_adj = timeit(lambda: system.backward(yp), repeats, cpu)
        likelihood = PoissonLogLikelihood(system, yp.clamp_min(0))
        t_osem = timeit(lambda: OSEM(likelihood)(n_iters=1, n_subsets=8), 1, cpu)
    else:
        t_first = timeit(lambda: _ours(grid, orbit, coll, mu, case)(x), 1, cpu)
        P = _ours(grid, orbit, coll, mu, case)
        y = P(x)
        t_fwd = timeit(lambda: P(x), repeats, cpu)
        t_adj = timeit(lambda: P.A_adjoint(y), repeats, cpu)
        t_osem = timeit(lambda: osem(y, P, 1, 8), repeats, cpu)
    return {"case": case, "base_mb": base, "peak_mb": _rss_mb(), "forward_first": t_first, "forward": t_fwd,
            "adjoint": t_adj, "osem_iteration": t_osem}


def run_case(case: str, args) -> dict:
    cmd = [sys.executable, __file__, "--worker", case, "--n", str(args.n), "--repeats", str(args.repeats),
           "--real-iters", str(args.real_iters)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        return {"case": case, "error": (out.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--peer", action="store_true", help="also PyTomography 3.4 (needs it installed)")
    ap.add_argument("--real", action="store_true", help="also the 256x256x200 x 120-view reconstruction")
    ap.add_argument("--real-iters", type=int, default=2)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.n, args.repeats, args.real_iters)))
        return
    cases = list(MODES) + (["peer"] if args.peer else []) + (["real-half", "real-recompute"] if args.real else [])
    results = [run_case(c, args) for c in cases]
    print(f"torch {torch.__version__}, {os.cpu_count()} threads; {args.n}^3 x 120 views, one process per case")
    print(f"{'case':<16} {'base MB':>8} {'peak MB':>8} {'peak-base':>9} {'fwd 1st s':>9} {'fwd s':>7} "
          f"{'adj s':>7} {'OSEM it s':>9} {'OSEM x full':>11}")
    ref = next((r for r in results if r.get("case") == "full" and "error" not in r), None)
    for r in results:
        if "error" in r:
            print(f"{r['case']:<16} error: {r['error']}")
            continue
        if r["case"].startswith("real-"):
            print(f"{r['case']:<16} {r['base_mb']:>8.0f} {r['peak_mb']:>8.0f} {r['peak_mb'] - r['base_mb']:>9.0f} "
                  f"{r['forward_first']:>9.2f}   OSEM {r['iters']}x8 {r['recon']:.1f} s "
                  f"({r['recon'] / r['iters']:.1f} s/iteration), cache {r['cache_mb']:.0f} MB, "
                  f"fit rel. L2 {r['fit_rel_l2']:.3f}")
            continue
        ratio = "" if ref is None else f"{r['osem_iteration'] / ref['osem_iteration']:.2f}"
        print(f"{r['case']:<16} {r['base_mb']:>8.0f} {r['peak_mb']:>8.0f} {r['peak_mb'] - r['base_mb']:>9.0f} "
              f"{r['forward_first']:>9.2f} {r['forward']:>7.2f} {r['adjoint']:>7.2f} {r['osem_iteration']:>9.2f} "
              f"{ratio:>11}")


if __name__ == "__main__":
    main()
