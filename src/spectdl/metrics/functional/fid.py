"""Fréchet Inception distance (FID, Heusel et al. 2017) between two sets of images.

Both sets are mapped to Inception-v3 pool features (2048-d), summarised by their mean ``μ`` and
sample covariance ``Σ`` (divisor N − 1, as ``numpy.cov``), and

``FID = ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁ Σ₂)^{1/2})``.

``Tr (Σ₁ Σ₂)^{1/2}`` is computed as ``Σ_i sqrt(λ_i)`` over the eigenvalues of the symmetric
positive semi-definite ``Σ₁^{1/2} Σ₂ Σ₁^{1/2}`` (the same eigenvalues as ``Σ₁ Σ₂``), in float64,
which avoids the complex round-off of a general matrix square root.

Input handling, as pytorch-fid does: grey images are repeated to 3 channels, an image in
``[0, data_range]`` is mapped to ``[−1, 1]`` (``2·x/data_range − 1``) and resized to 299 × 299
inside :class:`~spectdl.metrics.backbones.InceptionV3Features`. Each axial slice of a 3-D volume
counts as one image.

:func:`patch_fid` is the per-image variant: the two sets are the patches of one image and of its
reference at the same positions (a per-case number, so that methods can be compared case by case
with a paired test); it is a different quantity from the set-level FID and not comparable with it.
"""

from __future__ import annotations

import torch

from spectdl.errors import InputError
from spectdl.metrics.functional._checks import batch_values, check_image
from spectdl.metrics.functional.lpips import to_three_channel_slices

__all__ = ["feature_statistics", "fid", "fid_from_features", "frechet_distance", "image_features", "patch_features",
           "patch_fid", "patch_positions"]


def _check_features(name: str, feats) -> torch.Tensor:
    if not isinstance(feats, torch.Tensor) or feats.dim() != 2:
        found = tuple(feats.shape) if isinstance(feats, torch.Tensor) else type(feats).__name__
        raise InputError(f"{name}: expected features [N, D], found {found}")
    if not bool(torch.isfinite(feats).all()):
        raise InputError(f"{name}: contains NaN or infinite values; expected finite features")
    return feats.to(torch.float64)


def _fid_update(feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Summed statistics of ``[N, D]`` features: ``(Σ f [D], Σ f fᵀ [D, D], N)``, float64."""
    f = _check_features("features", feats)
    return f.sum(0), f.T @ f, f.shape[0]


def _fid_statistics(total: torch.Tensor, outer: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    if n < 2:
        raise InputError(f"features: a covariance needs at least 2 samples, found {n}")
    mu = total / n
    sigma = (outer - n * torch.outer(mu, mu)) / (n - 1)
    return mu, sigma


def feature_statistics(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean ``[D]`` and sample covariance ``[D, D]`` (float64) of ``features [N, D]``, N >= 2."""
    f = _check_features("features", features)
    if f.shape[0] < 2:
        raise InputError(f"features: a covariance needs at least 2 samples, found {f.shape[0]}")
    mu = f.mean(0)
    centred = f - mu
    return mu, centred.T @ centred / (f.shape[0] - 1)


def _sqrtm_psd(a: torch.Tensor) -> torch.Tensor:
    w, v = torch.linalg.eigh(a)
    return (v * w.clamp(min=0).sqrt()) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> torch.Tensor:
    """Fréchet distance of two Gaussians ``N(μ₁, Σ₁)``, ``N(μ₂, Σ₂)`` (float64 scalar, >= 0).

    Round-off can make the exact value slightly negative for equal inputs; it is clipped at 0.
    """
    mu1, mu2 = (torch.as_tensor(m, dtype=torch.float64) for m in (mu1, mu2))
    s1, s2 = (torch.as_tensor(s, dtype=torch.float64) for s in (sigma1, sigma2))
    d = mu1.numel()
    if mu1.shape != (d,) or mu2.shape != (d,):
        raise InputError(f"mu2: shape {tuple(mu2.shape)} differs from mu1 shape {tuple(mu1.shape)}; "
                         "expected [D]")
    for name, s in (("sigma1", s1), ("sigma2", s2)):
        if s.shape != (d, d):
            raise InputError(f"{name}: expected a [{d}, {d}] covariance, found {tuple(s.shape)}")
        if not bool(torch.isfinite(s).all()):
            raise InputError(f"{name}: contains NaN or infinite values; expected a finite covariance")
    s1 = 0.5 * (s1 + s1.T)
    s2 = 0.5 * (s2 + s2.T)
    root1 = _sqrtm_psd(s1)
    inner = root1 @ s2 @ root1
    tr_covmean = torch.linalg.eigvalsh(0.5 * (inner + inner.T)).clamp(min=0).sqrt().sum()
    value = ((mu1 - mu2) ** 2).sum() + torch.trace(s1) + torch.trace(s2) - 2.0 * tr_covmean
    return value.clamp(min=0.0)


def _fid_compute(stats_real, stats_fake) -> torch.Tensor:
    return frechet_distance(*_fid_statistics(*stats_real), *_fid_statistics(*stats_fake))


def fid_from_features(real_features: torch.Tensor, fake_features: torch.Tensor) -> torch.Tensor:
    """FID between two feature sets ``[N₁, D]`` and ``[N₂, D]`` (any feature extractor)."""
    real = _check_features("real_features", real_features)
    fake = _check_features("fake_features", fake_features)
    if real.shape[1] != fake.shape[1]:
        raise InputError(f"fake_features: {fake.shape[1]} features per sample; expected {real.shape[1]} as "
                         "real_features")
    return _fid_compute(_fid_update(real), _fid_update(fake))


def _default_extractor(weights_path):
    from spectdl.metrics.backbones import WEIGHT_FILES, InceptionV3Features

    if weights_path is None:
        raise InputError(
            f"weights_path: FID needs local Inception-v3 weights; expected {WEIGHT_FILES['inception_fid']}. "
            "Or pass feature_extractor=InceptionV3Features(...)"
        )
    return InceptionV3Features(weights_path)


@torch.no_grad()
def image_features(images: torch.Tensor, data_range, feature_extractor: torch.nn.Module,
                   batch_size: int = 32) -> torch.Tensor:
    """Features ``[N·Z, D]`` of images ``[N, C, *spatial]`` (C = 1 or 3), prepared as the module says."""
    images = check_image("images", images)
    r = batch_values("data_range", data_range, images)
    x = to_three_channel_slices(images, r)
    p = next(feature_extractor.parameters(), None)
    if p is not None:
        x = x.to(device=p.device, dtype=p.dtype)
    out = [feature_extractor(x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)]
    return torch.cat(out).reshape(x.shape[0], -1)


def fid(
    real_images: torch.Tensor,
    fake_images: torch.Tensor,
    data_range,
    *,
    weights_path=None,
    feature_extractor: torch.nn.Module | None = None,
    batch_size: int = 32,
) -> torch.Tensor:
    """FID between two sets of images ``[N, C, H, W]`` or ``[N, C, X, Y, Z]`` (C = 1 or 3).

    Args:
        data_range: the images' value range ``[0, data_range]`` (a number).
        weights_path: local FID Inception weights (pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``).
        feature_extractor: any module mapping ``[N, 3, H, W]`` in [−1, 1] to ``[N, D]``
            (overrides ``weights_path``).
        batch_size: images per forward pass.
    """
    extractor = feature_extractor if feature_extractor is not None else _default_extractor(weights_path)
    real = image_features(real_images, data_range, extractor, batch_size)
    fake = image_features(fake_images, data_range, extractor, batch_size)
    return fid_from_features(real, fake)


def patch_positions(shape, patch: int, stride: int, mask: torch.Tensor | None = None,
                    min_fraction: float = 0.5) -> list[tuple[int, int]]:
    """Top-left corners ``(row, column)`` of the ``patch``×``patch`` tiles of an image of ``shape``
    ``(H, W)`` every ``stride`` pixels, keeping the tiles whose share of ``mask`` pixels is at least
    ``min_fraction`` (``mask=None``: every tile)."""
    h, w = (int(v) for v in shape)
    for name, v in (("patch", patch), ("stride", stride)):
        if isinstance(v, bool) or int(v) != v or v < 1:
            raise InputError(f"{name}: expected a positive integer, found {v!r}")
    if patch > min(h, w):
        raise InputError(f"patch: {patch} is larger than the image {(h, w)}")
    corners = [(i, j) for i in range(0, h - patch + 1, stride) for j in range(0, w - patch + 1, stride)]
    if mask is None:
        return corners
    m = mask.reshape(h, w).to(torch.float64)
    return [(i, j) for i, j in corners if float(m[i:i + patch, j:j + patch].mean()) >= min_fraction]


@torch.no_grad()
def patch_fid(image: torch.Tensor, reference: torch.Tensor, data_range, *, feature_extractor: torch.nn.Module,
              patch: int = 64, stride: int = 32, mask: torch.Tensor | None = None, min_fraction: float = 0.5,
              batch_size: int = 64) -> torch.Tensor:
    """FID between the patches of ``image`` and those of ``reference`` at the same positions.

    ``image``, ``reference``: one 2-D image ``[H, W]`` (or ``[1, H, W]``) each, in ``[0, data_range]``;
    the tiles are :func:`patch_positions` (``mask``: e.g. the body, so that empty background tiles
    do not dominate), each one image of the two sets of :func:`fid_from_features` (needs >= 2 tiles).
    ``feature_extractor``: any module ``[N, 3, p, p]`` in [−1, 1] → ``[N, D]``. Float64 scalar.
    """
    if image.shape[-2:] != reference.shape[-2:] or image.dim() > 3 or reference.dim() > 3:
        raise InputError(f"image: shape {tuple(image.shape)}, reference {tuple(reference.shape)}; expected two "
                         "2-D images [H, W] of one shape")
    corners = patch_positions(image.shape[-2:], patch, stride, mask, min_fraction)
    if len(corners) < 2:
        raise InputError(f"mask: {len(corners)} tiles of {patch} px hold at least {min_fraction:g} of the mask; "
                         "expected >= 2 for a covariance")
    fa = patch_features(image, data_range, feature_extractor, corners, patch, batch_size)
    fb = patch_features(reference, data_range, feature_extractor, corners, patch, batch_size, name="reference")
    return fid_from_features(fb, fa)


@torch.no_grad()
def patch_features(image: torch.Tensor, data_range, feature_extractor: torch.nn.Module, corners, patch: int,
                   batch_size: int = 64, *, name: str = "image") -> torch.Tensor:
    """Features ``[N, D]`` of the ``patch``×``patch`` tiles of one 2-D image ``[H, W]`` (or ``[1, H, W]``)
    at the top-left ``corners`` of :func:`patch_positions`, prepared as :func:`image_features` does
    (``name`` names the image in errors)."""
    x = check_image(name, image.reshape(1, 1, *image.shape[-2:]))
    tiles = torch.stack([x[0, :, i:i + patch, j:j + patch] for i, j in corners])
    return image_features(tiles, data_range, feature_extractor, batch_size)
