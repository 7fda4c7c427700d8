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

At 140 keV water is 0.154 cm⁻¹, bone 0.295 cm⁻¹ and lung 0.044 cm⁻¹.

The attenuation image is put onto the activity grid when the two differ (the brain phantom's
attenuation is a 72×90×77 crop of its 120³ activity grid) with ``align``:

* ``"support"`` (default): the bounding box of the non-zero attenuation is centred on that of the
  non-zero activity. For the brain phantom this is an integer shift of (23, 16, 21) voxels and the
  two supports then coincide voxel for voxel;
* ``"centre"``: both images centred on the axis, as GATE places them (one voxel off for the brain);
* a tuple of mm: the attenuation image's centre in the activity grid's frame.

Attenuation values are resampled trilinearly (exact for whole-voxel shifts of equal grids) and the
material labels by nearest neighbour.

:func:`brain_perfusion_slice` turns the brain perfusion phantom into one realistic 2-D test image in
the convention of :func:`spectdl.phantoms.brain2d` (an axial slice through the striatum with a
chosen striatum : background ratio).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from spectdl.errors import GeometryError, InputError
from spectdl.geometry import VoxelGrid
from spectdl.io.interfile import parse_number, read_interfile
from spectdl.materials import mu_per_cm
from spectdl.phantoms.base import Phantom, check_batch_size, check_dtype, check_grid, check_number

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
        if len(parts) < 3:
            raise InputError(f"{path}: row {number} is {line!r}; expected 'low high MaterialName'")
        # The checked Interfile number parser: NaN, ±inf and overflowing Fortran forms are named errors.
        lo = parse_number(parts[0], f"row {number} (low)", path)
        hi = parse_number(parts[1], f"row {number} (high)", path)
        name = parts[2]
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
    material = _rule_material(name)
    return 0.0 if material is None else mu_per_cm(material, energy_kev)


def _rule_material(name: str) -> str | None:
    """The spectdl material a phantom material name maps to by the name rules (``None``: air)."""
    key = re.sub(r"[^a-z]", "", name.lower())
    for words, material in _NAME_RULES:
        if any(w in key for w in words):
            return material
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


SLICE_LABELS = {"outside": 0, "background": 1, "skull": 2, "striatum": 3}


def _single(folder: Path, words: tuple[str, ...], name: str, exclude: Path | None = None) -> Path:
    """The one ``*.h33`` header in ``folder`` whose name contains one of ``words`` (any case)."""
    found = [
        p for p in sorted(folder.glob("*.h33"))
        if any(w in p.name.lower() for w in words) and (exclude is None or p.resolve() != exclude.resolve())
    ]
    if len(found) != 1:
        what = "no" if not found else f"{len(found)} ({[p.name for p in found]})"
        raise InputError(
            f"{name}: found {what} .h33 headers named with {' or '.join(words)} in {str(folder)!r}; "
            "pass the header"
        )
    return found[0]


def brain_perfusion_slice(
    source_header: str | Path,
    attenuation_header: str | Path | None = None,
    *,
    grid: VoxelGrid | None = None,
    ratio: float = 6.0,
    background: str = "scaled",
    slice_index: int | None = None,
    striatum_value: float | None = None,
    energy_kev: float = 140.0,
    batch_size: int = 1,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Phantom:
    """One axial slice through the striatum of the published brain perfusion phantom, as a 2-D
    :class:`Phantom` in :func:`~spectdl.phantoms.brain2d`'s convention (a realistic test image).

    The source is the 120³ activity image at 2 mm (values 10 skull and CSF, 100 scalp, 230 white
    matter, 920 grey matter, 1012 striatum) with its 72×90×77 material-index attenuation crop, read
    with :func:`load_interfile` (``align="support"``). :func:`~spectdl.io.interfile.read_interfile`
    returns images as ``[x, y, z]`` with ``z`` the Interfile slice axis; in this phantom ``z`` is the
    axial (inferior → superior) axis, ``x`` left-right and ``y`` anterior-posterior, so the slice is
    ``image[:, :, k]``, an ``[x, y]`` image like brain2d's.

    * Striatum: the voxels holding the highest activity value of the volume (the phantom is piecewise
      constant over its tissue classes and the striatum, caudate and putamen, is its hottest class:
      1012, 1803 voxels in two lobes), or ``striatum_value``.
    * Slice: ``slice_index``, by default the axial slice with the most striatum voxels (the first
      one on a tie): ``k = 60`` for the published files (191 striatum voxels; the striatum spans
      slices 51-69).
    * Labels (by material and class): 0 outside (air), 2 skull (materials that map to bone), 3
      striatum, 1 everything else in the head (grey and white matter, CSF, scalp).
    * Activity, ``background="scaled"`` (default): the striatum is set to ``ratio`` and every other
      voxel is multiplied by one factor ``s = 1 / mean(raw activity over label 1)``, so that

          mean(activity | label 3) : mean(activity | label 1) = ratio : 1

      exactly while the published tissue contrasts are kept (grey : white : scalp : CSF =
      920 : 230 : 100 : 10; on slice 60 grey matter becomes 2.13, white 0.53); the skull gets the same
      factor (0.023). ``background="uniform"``: every voxel of labels 1 and 2 is 1 (brain2d's training
      background with ``skull_activity=1``) and the striatum ``ratio``, leaving only the anatomy's
      shape out of the training distribution.
    * Attenuation: the materials at ``energy_kev`` (water 0.154 cm⁻¹, bone 0.295 cm⁻¹ at 140 keV).

    The slice is placed with the source volume's in-plane centre on the grid centre. On the default
    grid (128² at 2 mm, the source's pixel size) that is a zero pad of 4 pixels on each side, a copy
    without interpolation; on other grids activity and μ are resampled bilinearly and the labels by
    nearest neighbour (the ratio then holds on the source slice, not exactly on the grid).

    Args:
        source_header: the activity ``.h33`` header, or the phantom's folder (its single
            ``.h33`` named with "source").
        attenuation_header: the attenuation header; by default the single other ``.h33`` beside the
            source named with "att" or "atn" (its materials file, ``*Range*.dat``, is found by
            :func:`load_interfile`).
        grid: 2-D grid of the result, default ``VoxelGrid((128, 128), 2.0)``; it must hold the head.
        ratio: striatum : background activity ratio, > 0.
        background: ``"scaled"`` or ``"uniform"`` (above).
        slice_index: axial slice ``k`` (0-based, along the source's third axis), default the one with
            the most striatum voxels; it must contain striatum.
        striatum_value: the raw activity value of the striatum, default the volume's maximum.
        energy_kev: photon energy of the attenuation map.
        batch_size: ``B`` copies of the slice (for noise realisations through ``spectdl.data.simulate``);
            ``seed`` and ``generator`` are accepted for that interface and unused (a fixed anatomy).

    Returns:
        :class:`Phantom` with ``activity``, ``mu_per_cm`` (cm⁻¹) and int64 ``labels``, each
        ``[B, 1, nx, ny]`` on ``grid``; ``label_names`` = :data:`SLICE_LABELS`; ``info`` has
        ``source`` and ``attenuation_header`` (paths), ``slice_index``, ``slice_axis`` (2),
        ``slice_z_mm`` (slice centre in the source frame), ``striatum_value`` (raw),
        ``striatum_voxels`` (in the slice), ``striatum_voxels_per_slice`` (list over ``z``),
        ``background_scale`` (``s``, or ``None`` when uniform), ``ratio``, ``background``,
        ``energy_kev`` and ``seeds`` (empty).
    """
    grid = check_grid(VoxelGrid((128, 128), 2.0) if grid is None else grid, 2)
    ratio = check_number("ratio", ratio, 0, low_open=True)
    if background not in ("scaled", "uniform"):
        raise InputError(f"background: expected 'scaled' or 'uniform', found {background!r}")
    dtype = check_dtype(dtype)
    source = Path(source_header)
    if source.is_dir():
        source = _single(source, ("source",), "source_header")
    if not source.is_file():
        raise InputError(f"source_header: {str(source)!r} does not exist")
    if attenuation_header is None:
        attenuation = _single(source.parent, ("att", "atn"), "attenuation_header", exclude=source)
    else:
        attenuation = Path(attenuation_header)

    vol = load_interfile(source, attenuation, energy_kev=energy_kev, dtype=torch.float64)
    if vol.grid.ndim != 3:
        raise InputError(f"source_header: expected a 3-D image, found a {vol.grid.ndim}-D one")
    if vol.labels is None:
        raise InputError("attenuation_header: the skull needs a material-index image with a materials file")
    act, mu, mat = vol.activity[0, 0], vol.mu_per_cm[0, 0], vol.labels[0, 0]
    nz = vol.grid.shape[2]

    if striatum_value is None:
        sv = float(act.max())
    else:
        sv = check_number("striatum_value", striatum_value, 0, low_open=True)
        if not bool((act == sv).any()):
            raise InputError(f"striatum_value: no voxel of {source.name} holds the value {sv}")
    striatum = act == sv
    per_slice = striatum.sum((0, 1))
    if slice_index is None:
        k = int(torch.argmax(per_slice))  # the first maximum
    else:
        if isinstance(slice_index, bool) or int(slice_index) != slice_index or not 0 <= slice_index < nz:
            raise InputError(f"slice_index: expected an integer in [0, {nz}), found {slice_index!r}")
        k = int(slice_index)
        if int(per_slice[k]) == 0:
            raise InputError(f"slice_index: slice {k} holds no striatum voxel (value {sv})")

    a, m, mat_k, st = act[:, :, k], mu[:, :, k], mat[:, :, k], striatum[:, :, k]
    # Labels from the material rows: air -> outside, bone-like -> skull, the rest -> background.
    labels = torch.full(a.shape, SLICE_LABELS["background"], dtype=torch.int64)
    for name, row in vol.label_names.items():
        material = _rule_material(name)
        if material is None:
            labels[mat_k == row] = SLICE_LABELS["outside"]
        elif material == "bone":
            labels[mat_k == row] = SLICE_LABELS["skull"]
    labels[st] = SLICE_LABELS["striatum"]

    bg = labels == SLICE_LABELS["background"]
    if background == "scaled":
        mean_bg = float(a[bg].mean()) if bool(bg.any()) else 0.0
        if mean_bg <= 0:
            raise InputError(f"slice_index: slice {k} has no background activity to scale")
        scale = 1.0 / mean_bg
        out = torch.where(st, ratio, a * scale)
    else:
        scale = None
        out = torch.where(st, ratio, torch.where(labels > 0, 1.0, 0.0)).to(torch.float64)

    src = VoxelGrid(tuple(vol.grid.shape[:2]), tuple(vol.grid.voxel_size_mm[:2]))
    # The head must fit the grid: its bounding box (voxel edges) within the field of view.
    inside = torch.nonzero(labels > 0)
    for axis in range(2):
        size = src.voxel_size_mm[axis]
        lo = (float(inside[:, axis].min()) - (src.shape[axis] - 1) / 2.0 - 0.5) * size
        hi = (float(inside[:, axis].max()) - (src.shape[axis] - 1) / 2.0 + 0.5) * size
        half = grid.extent_mm[axis] / 2.0
        if lo < -half - 1e-9 or hi > half + 1e-9:
            raise GeometryError(
                f"grid: the head spans [{lo:.1f}, {hi:.1f}] mm along axis {axis}; a field of view of "
                f"{grid.extent_mm} mm crops it"
            )

    def place(image: torch.Tensor, mode: str) -> torch.Tensor:
        return _resample(image[None, None], src, grid, (0.0, 0.0), mode)

    activity = place(out, "bilinear")
    mu_out = place(m, "bilinear")
    lab_out = place(labels.to(torch.float64), "nearest").round().long()
    info = {
        "source": str(source),
        "attenuation_header": str(attenuation),
        "materials_file": vol.info.get("materials_file"),
        "slice_index": k,
        "slice_axis": 2,
        "slice_z_mm": (k - (nz - 1) / 2.0) * vol.grid.voxel_size_mm[2],
        "striatum_value": sv,
        "striatum_voxels": int(per_slice[k]),
        "striatum_voxels_per_slice": [int(v) for v in per_slice.tolist()],
        "background_scale": scale,
        "ratio": ratio,
        "background": background,
        "energy_kev": float(energy_kev),
        "seeds": [],
    }
    # A fixed anatomy: a batch repeats it (``seed``/``generator`` are accepted, and unused, so that
    # spectdl.data.simulate can draw noise realisations of it like any random phantom).
    reps = (check_batch_size(batch_size), 1, 1, 1)
    return Phantom(
        activity=activity.to(device=device, dtype=dtype).repeat(reps),
        mu_per_cm=mu_out.to(device=device, dtype=dtype).repeat(reps),
        grid=grid,
        labels=lab_out.to(device).repeat(reps),
        label_names=dict(SLICE_LABELS),
        info=info,
    )
