"""Image-quality, quantitative and perceptual metrics for SPECT images."""

from spectdl.metrics import functional

__all__ = ["functional"]
