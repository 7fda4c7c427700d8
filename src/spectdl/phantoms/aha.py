"""The 17 segments of the American Heart Association (AHA) left-ventricular model.

Cerqueira M. D. et al. "Standardized myocardial segmentation and nomenclature for tomographic
imaging of the heart." Circulation 105:539–542 (2002).

One definition for the phantoms (defects drawn by segment and territory) and for the cardiac
analysis (polar maps), so that a segment means the same wall in both.

Coordinates
-----------
* ``t``: position along the LV long axis, normalised so that the base plane is 0 and the apical
  end of the cavity is 1. The basal ring is ``0 ≤ t < 1/3``, the mid ring ``1/3 ≤ t < 2/3``, the
  apical ring ``2/3 ≤ t ≤ 1``; myocardium beyond the cavity (``t > 1``, the apical cap) is
  segment 17, the apex.
* ``φ`` (degrees): angle about the long axis, from the anterior wall (0°) towards the lateral wall
  (90°), inferior (180°) and septum (270°).

The basal and mid rings have six 60° sectors centred on anterior (0°), anterolateral (60°),
inferolateral (120°), inferior (180°), inferoseptal (240°) and anteroseptal (300°); the apical
ring has four 90° sectors centred on anterior, lateral, inferior and septal. The septal sectors are
fixed by angle here, not by the right-ventricular insertion points a reader would use.

Territories (the AHA's usual assignment of segments to coronary arteries): LAD 1, 2, 7, 8, 13, 14,
17; RCA 3, 4, 9, 10, 15; LCx 5, 6, 11, 12, 16.
"""

from __future__ import annotations

import torch

__all__ = ["N_SEGMENTS", "SEGMENT_NAMES", "TERRITORIES", "segment_of", "territory_of_segment"]

N_SEGMENTS = 17

SEGMENT_NAMES = (
    "basal anterior", "basal anteroseptal", "basal inferoseptal", "basal inferior", "basal inferolateral",
    "basal anterolateral", "mid anterior", "mid anteroseptal", "mid inferoseptal", "mid inferior",
    "mid inferolateral", "mid anterolateral", "apical anterior", "apical septal", "apical inferior",
    "apical lateral", "apex",
)

TERRITORIES: dict[str, tuple[int, ...]] = {
    "LAD": (1, 2, 7, 8, 13, 14, 17),
    "LCx": (5, 6, 11, 12, 16),
    "RCA": (3, 4, 9, 10, 15),
}

# Ring sectors in order of φ from anterior through lateral, inferior and septal.
_RING6 = (1, 6, 5, 4, 3, 2)  # basal; mid = basal + 6
_RING4 = (13, 16, 15, 14)


def segment_of(t: torch.Tensor, phi_deg: torch.Tensor) -> torch.Tensor:
    """AHA segment (1..17, int64) of points at normalised long-axis position ``t`` and angle
    ``phi_deg`` (broadcast together; see the module docstring). Points with ``t < 0`` (beyond the
    base) get 0."""
    t, phi = torch.broadcast_tensors(torch.as_tensor(t), torch.as_tensor(phi_deg))
    phi = torch.remainder(phi.to(torch.float64), 360.0)
    six = torch.remainder(torch.floor((phi + 30.0) / 60.0), 6).to(torch.int64)
    four = torch.remainder(torch.floor((phi + 45.0) / 90.0), 4).to(torch.int64)
    ring6 = torch.tensor(_RING6, dtype=torch.int64, device=six.device)[six]
    ring4 = torch.tensor(_RING4, dtype=torch.int64, device=four.device)[four]
    t = t.to(torch.float64)
    seg = torch.where(t < 1.0 / 3.0, ring6, torch.where(t < 2.0 / 3.0, ring6 + 6, ring4))
    seg = torch.where(t > 1.0, torch.full_like(seg, 17), seg)
    return torch.where(t < 0.0, torch.zeros_like(seg), seg)


def territory_of_segment() -> dict[int, str]:
    """``{segment: territory}`` for segments 1..17."""
    return {s: name for name, segs in TERRITORIES.items() for s in segs}
