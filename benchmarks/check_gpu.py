"""GPU checks of the physics core (run where a GPU exists; CI has none, so this is not a test).

* adjointness of the projector on CUDA in float64, with attenuation and collimator response;
* CPU and CUDA projections agree in float32;
* OSEM runs on CUDA and matches the CPU result.

Usage: ``python benchmarks/check_gpu.py``; prints one line per check and exits non-zero on a failure.
"""

from __future__ import annotations

import sys

import torch

from spectdl.geometry import Collimator, Orbit, VoxelGrid
from spectdl.physics import SpectProjector
from spectdl.recon import osem


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device; nothing to check")
        return 0
    dev = torch.device("cuda")
    ok = True
    grid = VoxelGrid((48, 48, 24), 4.42)
    orbit = Orbit.circular(36, 220.0, direction="cw")
    coll = Collimator.preset("LEHR")
    mu = 0.15 * torch.rand((2, 1) + grid.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    res = SpectProjector(grid, orbit, coll, mu.to(dev)).adjointness_test(batch=2)
    print(f"cuda float64 adjointness: relative error {res.relative_error:.2e}")
    ok &= res.relative_error < 1e-5
    x = torch.rand((2, 1) + grid.shape, generator=torch.Generator().manual_seed(1))
    y_cpu = SpectProjector(grid, orbit, coll, mu.float())(x)
    y_gpu = SpectProjector(grid, orbit, coll, mu.float().to(dev))(x.to(dev)).cpu()
    rel = float((y_cpu - y_gpu).norm() / y_cpu.norm())
    print(f"float32 CPU vs CUDA projection: relative difference {rel:.2e}")
    ok &= rel < 1e-5
    P_cpu = SpectProjector(grid, orbit, coll, mu.float())
    P_gpu = SpectProjector(grid, orbit, coll, mu.float().to(dev))
    r_cpu = osem(y_cpu, P_cpu, 2, 6)
    r_gpu = osem(y_gpu.to(dev), P_gpu, 2, 6).cpu()
    rel = float((r_cpu - r_gpu).norm() / r_cpu.norm())
    print(f"OSEM 2x6 CPU vs CUDA: relative difference {rel:.2e}")
    ok &= rel < 1e-4
    print(f"peak CUDA memory allocated: {torch.cuda.max_memory_allocated() / 2**20:.0f} MB")
    print("all GPU checks passed" if ok else "GPU CHECK FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
