"""Speed and memory of every model of spectdl.models at its study's input size.

Usage::

    python benchmarks/bench_models.py                 # CPU, float32
    python benchmarks/bench_models.py --device cuda   # GPU, bf16 autocast and channels_last
    python benchmarks/bench_models.py --quick         # a smoke run: small inputs, one repetition
    python benchmarks/bench_models.py --cpu-paths     # DynUNet3d on each CPU path (channels_last_3d, bf16)

For each model it prints the forward time per sample (eval mode, no autograd), the forward+backward
time per sample (train mode, loss = mean of the output) and the peak memory of each: on CPU the
growth of the process's maximum resident set size (``resource.getrusage``) over the resident size
after building the model and its input; on GPU ``torch.cuda.max_memory_allocated`` over the memory
allocated before the pass. Each model runs in its own subprocess, so the peaks do not mix. GFLOP/s is
the forward+backward pass's floating-point operations (counted once, outside the timed loop, by
``torch.utils.flop_counter.FlopCounterMode``: convolutions and matrix products) over its median time.
The last column is the forward+backward time relative to the plain U-Net of the same run.

``--cpu-paths`` times one training step (forward, loss = mean output in float32, backward) of the
cardiac-PVC networks, DynUNet3d static, dynamic and DC-dynamic (2 → 1 channels, input ``--batch`` ×
2 × ``--shape``, default 2 × 2 × 40×40×24 so that the run stays short on two cores), on the CPU paths
that can raise the achieved GFLOP/s: float32 (torch's default oneDNN convolutions), model and input
in ``torch.channels_last_3d`` memory format, ``torch.autocast("cpu", dtype=torch.bfloat16)`` around
the forward, and both. Each variant and path runs in its own subprocess; it prints the median time
per sample (ms) after one untimed step, the GFLOP per sample, GFLOP/s, the time relative to static
float32 in the same run, the max-RSS growth (MB), the best path of each variant, and DC-dynamic's
time over static's.

Input sizes: those stated by the studies (pix2pix 64×64 projections, RRDBNet 192×192 patches,
SPECTnet 128×128, DC-Dy U-Net 70×70×50); the studies of U²-Net and of the EDSR/RCAN/U-Net baselines
give none here, so 128×128 slices are assumed for them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

# name -> (registry name, constructor kwargs, input shape without batch, quick input shape)
MODELS: dict[str, tuple[str, dict, tuple[int, ...], tuple[int, ...]]] = {
    "UNet": ("unet", dict(in_channels=1, out_channels=1), (1, 128, 128), (1, 32, 32)),
    "U2Net": ("u2net", dict(in_channels=2, out_channels=1), (2, 128, 128), (2, 48, 48)),
    "U2NetSmall": ("u2net_small", dict(in_channels=2, out_channels=1), (2, 128, 128), (2, 48, 48)),
    "Pix2PixGenerator": ("pix2pix_generator", dict(in_channels=1, out_channels=1), (1, 64, 64), (1, 64, 64)),
    "PatchDiscriminator": (
        "patch_discriminator", dict(in_channels=2, out_channels=1), (2, 64, 64), (2, 32, 32)
    ),
    "RRDBNet": ("rrdbnet", dict(in_channels=1, out_channels=1), (1, 192, 192), (1, 24, 24)),
    "VGGDiscriminator": (
        "vgg_discriminator", dict(in_channels=1, out_channels=1, patch_size=192), (1, 192, 192), None
    ),
    "SPECTnet": ("spectnet", dict(in_channels=2, out_channels=1), (2, 128, 128), (2, 128, 128)),
    "DynUNet3d static": (
        "dynunet3d", dict(in_channels=2, out_channels=1, mode="static"), (2, 70, 70, 50), (2, 14, 14, 6)
    ),
    "DynUNet3d dynamic": (
        "dynunet3d", dict(in_channels=2, out_channels=1, mode="dynamic"), (2, 70, 70, 50), (2, 14, 14, 6)
    ),
    "DynUNet3d DC-Dy": (
        "dynunet3d", dict(in_channels=2, out_channels=1, mode="dc-dynamic"), (2, 70, 70, 50), (2, 14, 14, 6)
    ),
    "EDSR": ("edsr", dict(in_channels=1, out_channels=1), (1, 128, 128), (1, 24, 24)),
    "RCAN": ("rcan", dict(in_channels=1, out_channels=1), (1, 128, 128), (1, 16, 16)),
}
QUICK_OVERRIDES = {"VGGDiscriminator": dict(patch_size=32)}


def _rss_mb() -> float:
    # ru_maxrss is in kilobytes on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _current_rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def count_flops(fn) -> int:
    """Floating-point operations of one call of ``fn`` as ``FlopCounterMode`` counts them
    (convolutions and matrix products, forward and backward; a multiply-add counts 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def run_one(label: str, kind: str, device: str, batch: int, quick: bool, warmup: int, reps: int) -> dict:
    """One model, one kind of pass (``fwd`` or ``fb``): median ms per sample, peak MB of the first
    pass, and for ``fb`` the GFLOP per sample of a forward+backward pass."""
    import statistics

    import torch

    from spectdl.models import build, count_parameters

    name, kwargs, shape, quick_shape = MODELS[label]
    kwargs = dict(kwargs)
    if quick:
        kwargs.update(QUICK_OVERRIDES.get(label, {}))
        shape = quick_shape or (shape[0],) + (32,) * (len(shape) - 1)
    cuda = device.startswith("cuda")
    model = build(name, **kwargs).to(device)
    x = torch.rand(batch, *shape, generator=torch.Generator().manual_seed(0)).to(device)
    if cuda:
        fmt = torch.channels_last if x.dim() == 4 else torch.channels_last_3d
        model = model.to(memory_format=fmt)
        x = x.contiguous(memory_format=fmt)

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def autocast():
        return torch.autocast("cuda", dtype=torch.bfloat16) if cuda else torch.autocast("cpu", enabled=False)

    def forward():
        with torch.no_grad(), autocast():
            model(x)

    def forward_backward():
        with autocast():
            out = model(x)
        out.float().mean().backward()
        model.zero_grad(set_to_none=True)

    def measure(fn, train: bool):
        model.train(train)
        # Memory from the first pass in a fresh process: later passes reuse blocks the allocator
        # keeps, which would hide the growth on CPU.
        sync()
        if cuda:
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        else:
            base = _current_rss_mb()
        fn()
        sync()
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20 if cuda else max(_rss_mb() - base, 0.0)
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(reps):
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - t0)
        return statistics.median(times) / batch, peak

    seconds, peak = measure(forward if kind == "fwd" else forward_backward, train=kind == "fb")
    # Counted after the timed passes: FlopCounterMode's dispatch overhead must not enter the times.
    gflop = count_flops(forward_backward) / batch / 1e9 if kind == "fb" else None
    return dict(label=label, params=count_parameters(model), shape=list(shape), ms=1e3 * seconds, mb=peak,
                gflop=gflop)


# The CPU paths of --cpu-paths; the first is the baseline of its ratios.
PATHS = ("float32", "channels_last_3d", "bf16 autocast", "bf16 autocast + channels_last_3d")
DYNUNET_MODES = ("static", "dynamic", "dc-dynamic")


def dynunet_step(mode: str, path: str, shape, batch: int):
    """A function that runs one DynUNet3d training step (2 → 1 channels, input ``[batch, 2, *shape]``,
    forward, loss = mean output in float32, backward) on one of ``PATHS``."""
    import torch

    from spectdl.models import build

    if path not in PATHS:
        raise ValueError(f"unknown CPU path {path!r}; expected one of {PATHS}")
    model = build("dynunet3d", in_channels=2, out_channels=1, mode=mode).train()
    x = torch.rand(batch, 2, *shape, generator=torch.Generator().manual_seed(0))
    if "channels_last_3d" in path:
        model = model.to(memory_format=torch.channels_last_3d)
        x = x.contiguous(memory_format=torch.channels_last_3d)
    bf16 = path.startswith("bf16")

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(x)
        out.float().mean().backward()
        model.zero_grad(set_to_none=True)

    return step


def run_path(mode: str, path: str, shape, batch: int, reps: int) -> dict:
    """One DynUNet3d variant on one CPU path: median ms per sample of a training step, GFLOP per
    sample, and MB of max-RSS growth over the resident size after building the model and input."""
    import statistics

    step = dynunet_step(mode, path, shape, batch)
    base = _current_rss_mb()
    # The counted step is also the warm-up (oneDNN builds its primitives on the first call); it is
    # not timed, since FlopCounterMode slows every op.
    flops = count_flops(step)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return dict(ms=1e3 * statistics.median(times) / batch, gflop=flops / batch / 1e9,
                mb=max(_rss_mb() - base, 0.0))


def _child(args: list[str]) -> dict:
    """The JSON last line of this script run with ``args`` in a fresh process (so memory peaks do
    not mix), or ``{"error": ...}``."""
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        return {"error": lines[-1] if lines else f"exit status {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def cpu_paths(shape, batch: int, reps: int) -> None:
    """Print the --cpu-paths table (see the module docstring)."""
    import torch

    size = "×".join(map(str, shape))
    print(f"DynUNet3d, 2 -> 1 channels, input {batch} × 2 × {size}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; one training step (fwd + bwd), median of {reps} after one "
          f"untimed step; times per sample, memory = max-RSS growth")
    print("| variant | CPU path | ms per sample | GFLOP per sample | GFLOP/s | × static float32 | MB |")
    print("|---|---|---:|---:|---:|---:|---:|")
    base, best, float32 = None, {}, {}
    for mode in DYNUNET_MODES:
        for path in PATHS:
            r = _child(["--one-path", mode, path, "--shape", *map(str, shape), "--batch", str(batch),
                        "--reps", str(reps)])
            if "error" in r:
                print(f"| {mode} | {path} | FAILED: {r['error']} | | | | |", flush=True)
                continue
            if mode == "static" and path == PATHS[0]:
                base = r["ms"]
            if path == PATHS[0]:
                float32[mode] = r["ms"]
            if mode not in best or r["ms"] < best[mode][1]:
                best[mode] = (path, r["ms"])
            ratio = f"{r['ms'] / base:.2f}" if base else "-"
            print(f"| {mode} | {path} | {r['ms']:.0f} | {r['gflop']:.1f} | {r['gflop'] / r['ms'] * 1e3:.1f} "
                  f"| {ratio} | {r['mb']:.0f} |", flush=True)
    for mode, (path, ms) in best.items():
        print(f"best for {mode}: {path}" + (f" ({ms / base:.2f} × static float32)" if base else ""))
    # The goal is DC-dynamic within 1.5× of static; a study would train each on its best path.
    if "static" in best and "dc-dynamic" in best:
        print(f"dc-dynamic / static: {best['dc-dynamic'][1] / best['static'][1]:.2f} on each one's best path"
              + (f", {float32['dc-dynamic'] / float32['static']:.2f} on float32"
                 if {"static", "dc-dynamic"} <= set(float32) else ""))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--quick", action="store_true", help="small inputs, one repetition: a smoke run")
    parser.add_argument("--batch", type=int, default=2, help="samples per pass (2 so BatchNorm trains)")
    parser.add_argument("--reps", type=int, default=None,
                        help="timed repetitions (default 5, quick 1, --cpu-paths 2)")
    parser.add_argument("--only", nargs="*", default=None, help="labels to run (default: all)")
    parser.add_argument("--cpu-paths", action="store_true",
                        help="DynUNet3d on each CPU path (see the module docstring)")
    parser.add_argument("--shape", type=int, nargs=3, default=[40, 40, 24],
                        help="--cpu-paths input X Y Z (default 40 40 24; X, Y >= 9)")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--kind", default="fwd", choices=["fwd", "fb"], help=argparse.SUPPRESS)
    parser.add_argument("--one-path", nargs=2, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    reps = args.reps or (1 if args.quick else 5)
    warmup = 1 if args.quick else 2

    if args.one_path is not None:
        print(json.dumps(run_path(*args.one_path, args.shape, args.batch, args.reps or 2)))
        return
    if args.cpu_paths:
        if args.device != "cpu":
            parser.error("--cpu-paths measures the CPU; leave --device at cpu")
        cpu_paths(args.shape, args.batch, args.reps or 2)
        return
    if args.one is not None:
        print(json.dumps(run_one(args.one, args.kind, args.device, args.batch, args.quick, warmup, reps)))
        return

    labels = args.only or list(MODELS)
    unknown = [label for label in labels if label not in MODELS]
    if unknown:
        parser.error(f"unknown labels {unknown}; expected some of {list(MODELS)}")
    mode = "bf16 autocast, channels_last" if args.device.startswith("cuda") else "float32"
    mem = "peak allocated" if args.device.startswith("cuda") else "max-RSS growth"
    print(f"spectdl.models on {args.device} ({mode}), batch {args.batch}, median of {reps} reps"
          f"{', QUICK (small inputs)' if args.quick else ''}; times per sample, memory = {mem}")
    header = (
        f"{'model':<20} {'params':>11} {'input':>16} {'fwd ms':>9} {'fwd MB':>8} "
        f"{'fwd+bwd ms':>11} {'f+b MB':>8} {'GFLOP/s':>8} {'x UNet':>7}"
    )
    print(header)
    print("-" * len(header))
    baseline = None
    for label in labels:
        results = {}
        for kind in ("fwd", "fb"):
            results[kind] = _child(["--one", label, "--kind", kind, "--device", args.device,
                                    "--batch", str(args.batch), "--reps", str(reps)]
                                   + (["--quick"] if args.quick else []))
            if "error" in results[kind]:
                break
        failed = [r["error"] for r in results.values() if "error" in r]
        if failed:
            print(f"{label:<20} FAILED: {failed[0]}")
            continue
        f, fb = results["fwd"], results["fb"]
        if label == "UNet":
            baseline = fb["ms"]
        ratio = f"{fb['ms'] / baseline:7.1f}" if baseline else f"{'-':>7}"
        shape = "×".join(str(s) for s in f["shape"])
        rate = fb["gflop"] / (fb["ms"] / 1e3)
        print(f"{label:<20} {f['params']:>11,} {shape:>16} {f['ms']:>9.1f} {f['mb']:>8.0f} "
              f"{fb['ms']:>11.1f} {fb['mb']:>8.0f} {rate:>8.1f} {ratio}")


if __name__ == "__main__":
    main()
