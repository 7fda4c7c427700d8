"""SPECT physics: the projector (system matrix) and its parts."""

from spectdl.physics.projector import AdjointnessResult, SpectProjector

__all__ = ["AdjointnessResult", "SpectProjector"]
