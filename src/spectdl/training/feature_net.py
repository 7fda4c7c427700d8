"""spectdl's own feature network for planar scintigraphy, trained self-supervised (the fallback of
LPIPS, FID and perceptual losses when no ImageNet weights are available).

:func:`train_planar_features` trains a :class:`~spectdl.metrics.backbones.PlanarFeatures` with a
contrastive objective (SimCLR's NT-Xent, Chen et al. 2020) on patches of the given count images:
the two views of a patch differ by what should not change its meaning in nuclear medicine, i.e.
an independent Poisson resampling at a count level scaled by ``U(0.5, 2)``, and a random flip;
different patches are pushed apart. The features that survive are those of the anatomy and the
lesions, not of the noise: what a perceptual distance between two scans of one patient should
compare. Every layer's global average is projected by a two-layer head (discarded after
training) onto the unit sphere, and ``L = −log softmax(z_i·z_j/τ)`` over the ``2B − 1`` others.

Determinism: every random draw (initialisation, patch positions, flips, count levels, Poisson
noise) comes from one ``torch.Generator`` seeded with ``seed``; on the CPU two runs with the same
seed, images and settings give bit-identical weights (test). This is a plain loop, not
:func:`~spectdl.training.fit`: a network of about 0.3 M weights trained for a few hundred steps
needs no checkpoints, validation or resumption.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from spectdl.errors import InputError
from spectdl.metrics.backbones import PlanarFeatures

__all__ = ["save_planar_features", "train_planar_features"]


def _views(images: torch.Tensor, n: int, patch: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Two augmented views ``[n, 3, patch, patch]`` in [−1, 1] of ``n`` random patches."""
    N, _, H, W = images.shape
    i = torch.randint(0, N, (n,), generator=gen)
    r = torch.randint(0, H - patch + 1, (n,), generator=gen)
    c = torch.randint(0, W - patch + 1, (n,), generator=gen)
    base = torch.stack([images[a, 0, b:b + patch, d:d + patch] for a, b, d in zip(i.tolist(), r.tolist(), c.tolist())])
    out = []
    for _ in range(2):
        level = 0.5 + 1.5 * torch.rand(n, 1, 1, generator=gen, dtype=base.dtype)
        v = torch.poisson(base * level, generator=gen) / level
        flip = torch.rand(n, generator=gen) < 0.5
        v = torch.where(flip[:, None, None], v.flip(-1), v)
        top = v.reshape(n, -1).amax(1).clamp_min(1e-6)[:, None, None]
        out.append((2.0 * v / top - 1.0)[:, None].expand(-1, 3, -1, -1).contiguous())
    return out[0], out[1]


def _nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = z1.shape[0]
    logits = z @ z.T / temperature
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(logits, target)


def train_planar_features(images: torch.Tensor, *, seed: int, steps: int = 300, batch_size: int = 32,
                          patch: int = 64, lr: float = 1e-3, temperature: float = 0.2,
                          channels: Sequence[int] = (16, 32, 64, 128)) -> tuple[PlanarFeatures, dict[str, Any]]:
    """Train the fallback features on count images ``[N, 1, H, W]`` (non-negative, e.g. planar
    scans at the 1x count level), CPU float32 (module docstring).

    Returns ``(network, record)``: the frozen :class:`PlanarFeatures` and what made it
    (``kind``, ``seed``, ``steps``, ``batch_size``, ``patch``, ``lr``, ``temperature``,
    ``channels``, ``n_images``, ``loss_first``, ``loss_last`` — the mean NT-Xent of the first and
    last tenth of the steps)."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 1:
        raise InputError(f"images: expected count images [N, 1, H, W], found "
                         f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}")
    if not torch.isfinite(images).all() or bool((images < 0).any()):
        raise InputError("images: expected finite, non-negative counts")
    for name, v, low in (("steps", steps, 1), ("batch_size", batch_size, 2), ("patch", patch, 16)):
        if isinstance(v, bool) or int(v) != v or v < low:
            raise InputError(f"{name}: expected an integer >= {low}, found {v!r}")
    if patch > min(images.shape[-2:]):
        raise InputError(f"patch: {patch} is larger than the images {tuple(images.shape[-2:])}")
    if not (temperature > 0 and lr > 0 and math.isfinite(temperature) and math.isfinite(lr)):
        raise InputError(f"lr, temperature: expected positive numbers, found {lr!r}, {temperature!r}")
    gen = torch.Generator().manual_seed(int(seed))
    imgs = images.detach().to("cpu", torch.float32)
    net = PlanarFeatures(channels, generator=gen, requires_grad=True)
    width = sum(net.channels)
    head = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 64))
    with torch.no_grad():
        for m in head:
            if isinstance(m, nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (1.0 / m.in_features) ** 0.5)
                m.bias.zero_()
    opt = torch.optim.Adam([*net.parameters(), *head.parameters()], lr=lr)
    net.train()
    losses = []
    for _ in range(int(steps)):
        a, b = _views(imgs, int(batch_size), int(patch), gen)
        loss = _nt_xent(head(net.pooled(a)), head(net.pooled(b)), float(temperature))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    tenth = max(1, len(losses) // 10)
    record = {"kind": "spectdl PlanarFeatures, contrastive (NT-Xent) on Poisson-resampled planar patches",
              "seed": int(seed), "steps": int(steps), "batch_size": int(batch_size), "patch": int(patch), "lr": lr,
              "temperature": temperature, "channels": list(net.channels), "n_images": int(images.shape[0]),
              "loss_first": sum(losses[:tenth]) / tenth, "loss_last": sum(losses[-tenth:]) / tenth}
    return net, record


def save_planar_features(network: PlanarFeatures, path: str | Path, record: dict[str, Any], *,
                         overwrite: bool = False) -> Path:
    """Write the weights as safetensors with ``record`` in the file's metadata (atomically);
    ``PlanarFeatures(channels, weights_path=path)`` reads them back."""
    from safetensors.torch import save_file

    from spectdl.io.atomic import atomic_write

    tensors = {k: v.detach().contiguous() for k, v in network.state_dict().items()}
    return atomic_write(Path(path), lambda tmp: save_file(tensors, str(tmp), metadata={"record": json.dumps(record)}),
                        overwrite=overwrite, suffix=".safetensors")
