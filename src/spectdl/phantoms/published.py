"""Published digital phantoms stored as Interfile (for example the MIT-licensed phantoms of
B. Auer and S. Pells, "Phantoms for nuclear medicine imaging simulation": Jaszczak, Derenzo,
Defrise, brain perfusion, DaT, ...).

Those phantoms come as an activity image, an attenuation image of integer *material indices*
and a GATE "range to material" file (``Attenuation_*_Range.dat``)::

    4            <- number of rows
    0 0 Air      <- raw values lo..hi (inclusive) are the material named
    1 1 Skull
    2 2 TissueSoft_DataBase
    3 3 Brain

:func:`load_interfile` maps each material to a linear attenuation coefficient at the photon
energy with :func:`spectdl.materials.mu_per_cm` (NIST tables), by its name:

* ``air``, ``vacuum``, ``world`` -> 0 cm⁻¹ (air's 1.8·10⁻⁴ cm⁻¹ at 140 keV is negligible);
* names with ``lung`` -> ``"lung"`` (ICRU-44, 0.30 g/cm³);
* names with ``bone``, ``skull``, ``rib``, ``spine``, ``cortical`` -> ``"bone"`` (ICRU-44
  cortical bone, 1.92 g/cm³);
* ``water`` and soft tissues (names with ``tissue``, ``soft``, ``brain``, ``muscle``, ``blood``,
  ``liver``, ``kidney``, ``fat``, ``adipose``, ``skin``, ``plastic``, ``pmma``) -> ``"water"``
  (their densities, 0.95-1.06 g/cm³, are within 6 % of water's);
* anything else raises ``InputError``; ``material_mu`` overrides or extends the mapping.

At 140 keV water is 0.154 cm⁻¹, bone 0.284 cm⁻¹ and lung 0.044 cm⁻¹.

The attenuation image is put onto the activity grid when the two differ (the brain phantom's
attenuation is a 72×90×77 crop of its 120³ activity grid) with ``align``:

* ``"support"`` (default): the bounding box of the non-zero attenuation is centred on that of the
  non-zero activity. For the brain phantom this is an integer shift of (23, 16, 21) voxels and the
  two supports then coincide voxel for voxel;
* ``"centre"``: both images centred on the axis, as GATE places them (one voxel off for the brain);
* a tuple of mm: the attenuation image's centre in the activity grid's frame.

Attenuation values are resampled trilinearly (exact for whole-voxel shifts of equal grids) and the
material labels by nearest neighbour.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from spectdl.errors import InputError
from spectdl.geometry import VoxelGrid
from spectdl.io.interfile import read_interfile
from spectdl.materials import mu_per_cm
from spectdl.phantoms.base import Phantom, check_dtype, check_number

_NAME_RULES: tuple[tuple[tuple[str, ...], str | None], ...] = (
    (("air", "vacuum", "world"), None),
    (("lung",), "lung"),
    (("bone", "skull", "rib", "spine", "cortical"), "bone"),
    (("water", "tissue", "soft", "brain", "muscle", "blood", "liver", "kidney", "fat", "adipose", "skin",
      "plastic", "pmma"), "water"),
)


def read_material_ranges(path: str | Path) -> list[tuple[int, int, str]]:
    """Rows ``(lo, hi, name)`` of a GATE range-to-material file (extra columns are ignored)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"materials_file: {str(path)!r} does not exist")
    lines = [ln.split("#")[0].strip() for ln in path.read_text(encoding="latin-1").splitlines()]
    lines = [ln for ln in lines if ln]
    try:
        n = int(lines[0].split()[0])
    except (IndexError, ValueError):
        raise InputError(f"{path}: expected the number of rows on the first line, found "
                         f"{lines[0] if lines else ''!r}") from None
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        parts = line.split()
        try:
            lo, hi, name = float(parts[0]), float(parts[1]), parts[2]
        except (IndexError, ValueError):
            raise InputError(f"{path}: row {number} is {line!r}; expected 'low high MaterialName'") from None
        if hi < lo:
            raise InputError(f"{path}: row {number} has low {lo} > high {hi}")
        rows.append((int(lo), int(hi), name))
    if len(rows) != n:
        raise InputError(f"{path}: the first line announces {n} rows; found {len(rows)}")
    return rows


def material_mu_per_cm(
    name: str, energy_kev: float, overrides: dict[str, float | str] | None = None
) -> float:
    """Linear attenuation (cm⁻¹) of a phantom material name (rules in the module docstring)."""
    overrides = overrides or {}
    if name in overrides:
        value = overrides[name]
        if isinstance(value, str):
            return mu_per_cm(value, energy_kev)
        return check_number(f"material_mu[{name!r}]", value, 0)
    key = re.sub(r"[^a-z]", "", name.lower())
    for words, material in _NAME_RULES:
        if any(w in key for w in words):
            return 0.0 if material is None else mu_per_cm(material, energy_kev)
    raise InputError(
        f"material {name!r}: no attenuation is known for it; pass material_mu={{{name!r}: mu_per_cm or "
        f"a spectdl material name}}"
    )


def _find_materials_file(attenuation_header: Path) -> Path:
    folder = attenuation_header.parent
    found = sorted(folder.glob("*Range*.dat")) or sorted(folder.glob("*.dat"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise InputError(
            f"attenuation_header: no range-to-material file (*.dat) beside {str(attenuation_header)!r}; "
            f"pass materials_file= or attenuation_scale_per_cm="
        )
    raise InputError(
        f"attenuation_header: several candidate materials files beside it ({[p.name for p in found]}); "
        f"pass materials_file="
    )


def _support_centre_mm(image: torch.Tensor, grid: VoxelGrid) -> list[float]:
    nz = torch.nonzero(image[0, 0] != 0)
    if nz.numel() == 0:
        return [0.0] * grid.ndim
    lo, hi = nz.min(0).values.double(), nz.max(0).values.double()
    mid = (lo + hi) / 2.0
    return [(float(mid[a]) - (grid.shape[a] - 1) / 2.0) * grid.voxel_size_mm[a] for a in range(grid.ndim)]


def _resample(image: torch.Tensor, src: VoxelGrid, dst: VoxelGrid, centre_mm: Sequence[float], mode: str):
    """Sample ``image`` (on ``src``, its centre placed at ``centre_mm`` in ``dst``'s frame) at the
    voxel centres of ``dst``; zero outside."""
    starts = []
    for a in range(dst.ndim):
        idx0 = (-(dst.shape[a] - 1) / 2.0 * dst.voxel_size_mm[a] - centre_mm[a]) / src.voxel_size_mm[a] \
            + (src.shape[a] - 1) / 2.0
        same_size = abs(dst.voxel_size_mm[a] - src.voxel_size_mm[a]) <= 1e-9 * src.voxel_size_mm[a]
        starts.append(round(idx0) if same_size and abs(idx0 - round(idx0)) < 1e-6 else None)
    if all(k is not None for k in starts):
        # A whole-voxel shift between equal grids: copy, so that no value is interpolated.
        out = torch.zeros(image.shape[:2] + tuple(dst.shape), dtype=image.dtype, device=image.device)
        dst_sl, src_sl = [slice(None)] * 2, [slice(None)] * 2
        for a, k in enumerate(starts):
            lo, hi = max(0, k), min(src.shape[a], dst.shape[a] + k)
            if hi <= lo:
                return out
            src_sl.append(slice(lo, hi))
            dst_sl.append(slice(lo - k, hi - k))
        out[tuple(dst_sl)] = image[tuple(src_sl)]
        return out
    axes = []
    for a in range(dst.ndim):
        n_dst = dst.shape[a]
        p = (torch.arange(n_dst, dtype=torch.float64) - (n_dst - 1) / 2.0) * dst.voxel_size_mm[a]
        idx = (p - centre_mm[a]) / src.voxel_size_mm[a] + (src.shape[a] - 1) / 2.0
        n = src.shape[a]
        # align_corners=True maps index 0 -> -1 and n-1 -> +1.
        axes.append(2.0 * idx / (n - 1) - 1.0 if n > 1 else torch.zeros_like(idx))
    mesh = torch.meshgrid(*axes, indexing="ij")
    # grid_sample wants (W, H, D) order = last spatial axis first.
    coords = torch.stack(list(reversed(mesh)), -1)[None].to(image.dtype)
    return F.grid_sample(image, coords.to(image.device), mode=mode, padding_mode="zeros", align_corners=True)


def load_interfile(
    activity_header: str | Path,
    attenuation_header: str | Path | None = None,
    *,
    materials_file: str | Path | None = None,
    material_mu: dict[str, float | str] | None = None,
    attenuation_scale_per_cm: float | None = None,
    align: str | Sequence[float] = "support",
    energy_kev: float = 140.0,
    slice_units: str = "mm",
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Phantom:
    """A published phantom as a :class:`Phantom` on the activity image's grid.

    Args:
        activity_header: Interfile header of the activity image (its values are used as relative
            activity concentrations, e.g. 0/10 for the Jaszczak, 10-1012 for the brain phantom).
        attenuation_header: Interfile header of the attenuation image, or ``None`` (μ = 0).
        materials_file: the range-to-material file; by default the single ``*Range*.dat`` (or
            ``*.dat``) beside the attenuation header.
        material_mu: material name -> μ in cm⁻¹ or a spectdl material name, overriding the rules.
        attenuation_scale_per_cm: instead of materials, μ = raw value × this (cm⁻¹ per unit).
        align: ``"support"``, ``"centre"`` or the attenuation centre in mm (module docstring).
        energy_kev: photon energy of the attenuation map.
        slice_units: passed to :func:`spectdl.io.interfile.read_interfile`.

    Returns:
        :class:`Phantom` with batch 1. With a materials file, ``labels`` are the material rows
        (``label_names``: material name -> row index, row 0 being air in these files) resampled
        onto the activity grid; ``info`` has the file paths, ``materials`` (name -> μ cm⁻¹),
        ``attenuation_centre_mm`` and both headers.
    """
    dtype = check_dtype(dtype)
    activity, grid, act_header = read_interfile(activity_header, slice_units=slice_units, dtype=torch.float64)
    if bool((activity < 0).any()):
        raise InputError(f"activity_header: {activity_header} has negative values; expected activity >= 0")
    info: dict = {"activity_header": str(activity_header), "activity_keys": act_header, "seeds": []}
    labels = None
    label_names: dict[str, int] = {}
    if attenuation_header is None:
        mu = torch.zeros_like(activity)
    else:
        raw, att_grid, att_header = read_interfile(
            attenuation_header, slice_units=slice_units, dtype=torch.float64
        )
        if att_grid.ndim != grid.ndim:
            raise InputError(
                f"attenuation_header: a {att_grid.ndim}-D image does not match the {grid.ndim}-D "
                "activity image"
            )
        info.update(attenuation_header=str(attenuation_header), attenuation_keys=att_header)
        if attenuation_scale_per_cm is not None:
            scale = check_number("attenuation_scale_per_cm", attenuation_scale_per_cm, 0)
            mu_native, lab_native = raw * scale, None
        else:
            if materials_file is not None:
                mfile = Path(materials_file)
            else:
                mfile = _find_materials_file(Path(attenuation_header))
            rows = read_material_ranges(mfile)
            mu_native = torch.zeros_like(raw)
            lab_native = torch.full_like(raw, -1.0)
            materials: dict[str, float] = {}
            for index, (lo, hi, name) in enumerate(rows):
                value = material_mu_per_cm(name, energy_kev, material_mu)
                materials[name] = value
                label_names.setdefault(name, index)
                sel = (raw >= lo) & (raw <= hi)
                mu_native = torch.where(sel & (lab_native < 0), value, mu_native)
                lab_native = torch.where(sel & (lab_native < 0), float(index), lab_native)
            if bool((lab_native < 0).any()):
                missing = torch.unique(raw[lab_native < 0])[:10].tolist()
                raise InputError(
                    f"{mfile}: attenuation values {missing} of {attenuation_header} are in no range "
                    "of this file"
                )
            info.update(materials_file=str(mfile), materials=materials)

        if isinstance(align, str):
            if align == "centre":
                centre = [0.0] * grid.ndim
            elif align == "support":
                a_c = _support_centre_mm(activity, grid)
                m_c = _support_centre_mm(raw, att_grid)
                centre = [a - m for a, m in zip(a_c, m_c)]
            else:
                raise InputError(f"align: expected 'support', 'centre' or a tuple of mm, found {align!r}")
        else:
            centre = [check_number("align", v) for v in align]
            if len(centre) != grid.ndim:
                raise InputError(f"align: expected {grid.ndim} values in mm, found {align!r}")
        info["attenuation_centre_mm"] = centre
        same = att_grid == grid and all(abs(c) < 1e-9 for c in centre)
        if same:
            mu, lab = mu_native, lab_native
        else:
            mu = _resample(mu_native, att_grid, grid, centre, "bilinear")
            lab = None if lab_native is None else _resample(lab_native, att_grid, grid, centre, "nearest")
        if lab is not None:
            labels = lab.round().long().to(device)
    return Phantom(
        activity=activity.to(device=device, dtype=dtype),
        mu_per_cm=mu.to(device=device, dtype=dtype),
        grid=grid,
        labels=labels,
        label_names=label_names,
        info={**info, "energy_kev": float(energy_kev)},
    )
