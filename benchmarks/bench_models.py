"""Speed and memory of every model of spectdl.models at its study's input size.

Usage::

    python benchmarks/bench_models.py                 # CPU, float32
    python benchmarks/bench_models.py --device cuda   # GPU, bf16 autocast and channels_last
    python benchmarks/bench_models.py --quick         # a smoke run: small inputs, one repetition

For each model it prints the forward time per sample (eval mode, no autograd), the forward+backward
time per sample (train mode, loss = mean of the output) and the peak memory of each: on CPU the
growth of the process's maximum resident set size (``resource.getrusage``) over the resident size
after building the model and its input; on GPU ``torch.cuda.max_memory_allocated`` over the memory
allocated before the pass. Each model runs in its own subprocess, so the peaks do not mix. The last
column is the forward+backward time relative to the plain U-Net of the same run.

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


def run_one(label: str, kind: str, device: str, batch: int, quick: bool, warmup: int, reps: int) -> dict:
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
        sync()
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        sync()
        return (time.perf_counter() - t0) / reps / batch, peak

    seconds, peak = measure(forward if kind == "fwd" else forward_backward, train=kind == "fb")
    return dict(label=label, params=count_parameters(model), shape=list(shape), ms=1e3 * seconds, mb=peak)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--quick", action="store_true", help="small inputs, one repetition: a smoke run")
    parser.add_argument("--batch", type=int, default=2, help="samples per pass (2 so BatchNorm trains)")
    parser.add_argument("--reps", type=int, default=None, help="timed repetitions (default 5, quick 1)")
    parser.add_argument("--only", nargs="*", default=None, help="labels to run (default: all)")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--kind", default="fwd", choices=["fwd", "fb"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    reps = args.reps or (1 if args.quick else 5)
    warmup = 1 if args.quick else 2

    if args.one is not None:
        print(json.dumps(run_one(args.one, args.kind, args.device, args.batch, args.quick, warmup, reps)))
        return

    labels = args.only or list(MODELS)
    unknown = [label for label in labels if label not in MODELS]
    if unknown:
        parser.error(f"unknown labels {unknown}; expected some of {list(MODELS)}")
    mode = "bf16 autocast, channels_last" if args.device.startswith("cuda") else "float32"
    mem = "peak allocated" if args.device.startswith("cuda") else "max-RSS growth"
    print(f"spectdl.models on {args.device} ({mode}), batch {args.batch}, {reps} reps"
          f"{', QUICK (small inputs)' if args.quick else ''}; times per sample, memory = {mem}")
    header = (
        f"{'model':<20} {'params':>11} {'input':>16} {'fwd ms':>9} {'fwd MB':>8} "
        f"{'fwd+bwd ms':>11} {'f+b MB':>8} {'x UNet':>7}"
    )
    print(header)
    print("-" * len(header))
    baseline = None
    for label in labels:
        results = {}
        for kind in ("fwd", "fb"):
            cmd = [sys.executable, __file__, "--one", label, "--kind", kind, "--device", args.device,
                   "--batch", str(args.batch), "--reps", str(reps)] + (["--quick"] if args.quick else [])
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                lines = proc.stderr.strip().splitlines()
                results = {"error": lines[-1] if lines else f"exit status {proc.returncode}"}
                break
            results[kind] = json.loads(proc.stdout.strip().splitlines()[-1])
        if "error" in results:
            print(f"{label:<20} FAILED: {results['error']}")
            continue
        f, fb = results["fwd"], results["fb"]
        if label == "UNet":
            baseline = fb["ms"]
        ratio = f"{fb['ms'] / baseline:7.1f}" if baseline else f"{'-':>7}"
        shape = "×".join(str(s) for s in f["shape"])
        print(f"{label:<20} {f['params']:>11,} {shape:>16} {f['ms']:>9.1f} {f['mb']:>8.0f} "
              f"{fb['ms']:>11.1f} {fb['mb']:>8.0f} {ratio}")

if __name__ == "__main__":
    main()
