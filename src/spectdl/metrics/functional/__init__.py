"""Pure metric functions: ``[B, C, *spatial]`` tensors in, per-image values ``[B]`` or a reduction out."""

from spectdl.metrics.functional.ssim import ssim, ssim_map

__all__ = ["ssim", "ssim_map"]
