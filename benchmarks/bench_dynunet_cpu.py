"""Achieved GFLOP/s of the cardiac-PVC networks (DynUNet3d) on the CPU, per variant and CPU path.

Usage: ``python benchmarks/bench_dynunet_cpu.py [--shape 40 40 24] [--batch 2] [--reps 1]``

For the static U-Net and the densely connected dynamic one (``mode="static"`` and ``"dc-dynamic"``,
2 → 1 channels as for the -CT variants), one training step (forward, loss = mean output, backward)
is timed after one warm-up step, for three CPU paths:

* ``float32``: the default (contiguous tensors, oneDNN convolutions as torch picks them);
* ``channels_last_3d``: model and input in ``torch.channels_last_3d`` memory format;
* ``bf16 autocast``: ``torch.autocast("cpu", dtype=torch.bfloat16)`` around the forward.

The FLOPs of one step are counted by ``torch.utils.flop_counter.FlopCounterMode`` (convolutions and
matrix products, forward and backward); GFLOP/s = that count / the median step time. The last
column is each step's time relative to the static network's float32 step in the same run.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from spectdl.models import build


def step(model, x, path: str) -> None:
    if path == "bf16 autocast":
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
    else:
        out = model(x)
    out.float().mean().backward()


def measure(mode: str, path: str, shape, batch: int, reps: int) -> tuple[float, float]:
    model = build("dynunet3d", in_channels=2, out_channels=1, mode=mode)
    x = torch.rand(batch, 2, *shape, generator=torch.Generator().manual_seed(0))
    if path == "channels_last_3d":
        model = model.to(memory_format=torch.channels_last_3d)
        x = x.contiguous(memory_format=torch.channels_last_3d)
    model.train()
    with FlopCounterMode(display=False) as counter:
        step(model, x, path)
    flops = counter.get_total_flops()
    model.zero_grad(set_to_none=True)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        step(model, x, path)
        times.append(time.perf_counter() - t0)
        model.zero_grad(set_to_none=True)
    return statistics.median(times), flops


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", type=int, nargs=3, default=[40, 40, 24])
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--reps", type=int, default=1)
    a = ap.parse_args()
    print(f"DynUNet3d, 2 -> 1 channels, input {a.batch} x 2 x {'x'.join(map(str, a.shape))}, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads; one training step (fwd + bwd)")
    print("| variant | CPU path | step s | GFLOP per step | GFLOP/s | × static float32 |")
    print("|---|---|---:|---:|---:|---:|")
    base = None
    for mode in ("static", "dc-dynamic"):
        for path in ("float32", "channels_last_3d", "bf16 autocast"):
            t, flops = measure(mode, path, a.shape, a.batch, a.reps)
            base = base or t
            print(f"| {mode} | {path} | {t:.2f} | {flops / 1e9:.1f} | {flops / 1e9 / t:.1f} | {t / base:.2f} |",
                  flush=True)
    print(f"peak memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
