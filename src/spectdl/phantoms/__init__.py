"""Digital phantoms: activity and attenuation (cm⁻¹) on a VoxelGrid, with region labels.

Every phantom function is deterministic given ``seed`` or ``generator`` and batches
(see :mod:`spectdl.phantoms.base` for the seeding rule).
"""

from spectdl.phantoms.base import Phantom, PlanarPhantom
from spectdl.phantoms.bone_torso import bone_torso
from spectdl.phantoms.brain2d import brain2d
from spectdl.phantoms.cardiac import cardiac
from spectdl.phantoms.nema_iec import nema_iec
from spectdl.phantoms.published import brain_perfusion_slice, load_interfile, read_material_ranges
from spectdl.phantoms.wholebody import wholebody_planar

__all__ = [
    "Phantom",
    "PlanarPhantom",
    "bone_torso",
    "brain2d",
    "brain_perfusion_slice",
    "cardiac",
    "load_interfile",
    "nema_iec",
    "read_material_ranges",
    "wholebody_planar",
]
