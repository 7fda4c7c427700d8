"""SPECT physics: the projector (system matrix) and its parts."""

from spectdl.physics.projector import AdjointnessResult, SpectProjector, forward_loop

__all__ = ["AdjointnessResult", "SpectProjector", "forward_loop"]
