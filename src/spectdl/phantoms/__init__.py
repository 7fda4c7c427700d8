"""Digital phantoms: activity and attenuation (cm⁻¹) on a VoxelGrid, with region labels.

Every phantom function is deterministic given ``seed`` or ``generator`` and batches
(see :mod:`spectdl.phantoms.base` for the seeding rule).
"""

from spectdl.phantoms.base import Phantom, PlanarPhantom
from spectdl.phantoms.brain2d import brain2d

__all__ = ["Phantom", "PlanarPhantom", "brain2d"]
