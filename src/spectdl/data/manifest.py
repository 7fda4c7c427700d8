"""Manifests of real cases: which files hold each case's images, and its train/val/test split.

A manifest is a CSV file (one row per case) or a YAML file (``cases:`` a list of mappings, and an
optional ``root:`` folder) with the columns

=============== ========== =====================================================================
column          required   content
=============== ========== =====================================================================
``case_id``     yes        unique name of the case
``split``       yes        ``train``, ``val`` or ``test``
``input``       yes        the low-count (or fast, or low-dose) image
``target``      yes        the standard image
``ct``          no         CT (HU), already on the grid of ``input``
``lesion_mask`` no         lesion mask (non-zero inside)
``organ_labels`` no        organ label map (integers)
=============== ========== =====================================================================

Each path is a NIfTI file (``.nii``, ``.nii.gz``, read by :func:`spectdl.io.read_nifti`), a NumPy
``.npy`` array, an Interfile volume header (``.h33``, :func:`spectdl.io.read_interfile_volume`) or
a DICOM series (a folder or a ``.dcm`` file: :func:`spectdl.io.read_ct_series` for ``ct``,
:func:`spectdl.io.read_volume_series` otherwise). Relative paths are resolved against the
manifest's folder (or ``root``, itself relative to that folder). Images are ``[X, Y, Z]``; a
trailing axis of length 1 is dropped, so planar scans stored as ``[X, Y, 1]`` come out 2-D.

:func:`load_manifest` checks the table and :func:`validate_manifest` the files; each reports every
problem it finds in one :class:`~spectdl.errors.InputError`, one line per problem naming the case,
the column and the path.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from spectdl.errors import InputError, SpectdlError, require
from spectdl.typed_config import read_yaml

__all__ = ["Case", "Manifest", "image_shape", "load_manifest", "read_case_image", "validate_manifest"]

REQUIRED = ("case_id", "split", "input", "target")
OPTIONAL = ("ct", "lesion_mask", "organ_labels")
IMAGE_COLUMNS = ("input", "target") + OPTIONAL
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Case:
    """One case: its id, split and the absolute path of each image column it has."""

    case_id: str
    split: str
    paths: dict[str, Path]


@dataclass(frozen=True)
class Manifest:
    """The cases of a manifest file (``path``), in file order."""

    path: Path
    cases: tuple[Case, ...]
    _shapes: dict[str, dict[str, tuple[int, ...]]] = field(default_factory=dict, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.cases)

    def split(self, name: str) -> list[Case]:
        """The cases of split ``name``."""
        if name not in SPLITS:
            raise InputError(f"split: expected one of {list(SPLITS)}, found {name!r}")
        return [c for c in self.cases if c.split == name]

    @property
    def columns(self) -> tuple[str, ...]:
        """Image columns that at least one case fills."""
        return tuple(c for c in IMAGE_COLUMNS if any(c in case.paths for case in self.cases))

    @property
    def validated(self) -> bool:
        return bool(self._shapes)


def _fail(problems: list[str], what: str) -> None:
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise InputError(f"{what}: {len(problems)} problem{'s' if len(problems) > 1 else ''}:\n{lines}")


def _rows_from_csv(path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in (reader.fieldnames or [])]
            rows = []
            for raw in reader:
                if None in raw:
                    rows.append({"__extra__": raw[None], **{k.strip(): v for k, v in raw.items() if k is not None}})
                else:
                    rows.append({k.strip(): v for k, v in raw.items()})
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"manifest {path}: cannot be read as CSV ({exc})") from None
    return header, rows


def _rows_from_yaml(path: Path) -> tuple[Path, list[str], list[dict[str, Any]]]:
    data = read_yaml(path, error=InputError)
    root = path.parent
    if isinstance(data, Mapping):
        unknown = [k for k in data if k not in ("root", "cases")]
        if unknown:
            raise InputError(f"manifest {path}: unknown top-level keys {unknown}; expected 'cases' and optionally 'root'")
        if data.get("root") is not None:
            root = (path.parent / str(data["root"])).resolve()
        data = data.get("cases")
    if not isinstance(data, list) or not all(isinstance(r, Mapping) for r in data):
        raise InputError(f"manifest {path}: expected 'cases:' as a list of mappings (one per case)")
    header = sorted({str(k) for r in data for k in r})
    return root, header, [{str(k): v for k, v in r.items()} for r in data]


def load_manifest(path: str | Path) -> Manifest:
    """Read a CSV or YAML manifest (see the module docstring) and check its table.

    Every problem (unknown or missing column, empty or duplicate ``case_id``, unknown split,
    empty required path, extra cells) is reported at once in one :class:`InputError`. Files are not
    opened here: see :func:`validate_manifest`.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"manifest: {path} not found; expected a CSV or YAML file")
    if path.suffix.lower() in (".yaml", ".yml"):
        root, header, rows = _rows_from_yaml(path)
    elif path.suffix.lower() == ".csv":
        root, (header, rows) = path.parent, _rows_from_csv(path)
    else:
        raise InputError(f"manifest: {path} has suffix {path.suffix!r}; expected .csv, .yaml or .yml")
    where = f"manifest {path}"
    unknown = [c for c in header if c not in REQUIRED + OPTIONAL]
    missing = [c for c in REQUIRED if c not in header]
    problems = []
    if unknown:
        problems.append(f"unknown columns {unknown}; expected {list(REQUIRED + OPTIONAL)}")
    if missing:
        problems.append(f"missing required columns {missing}")
    _fail(problems, where)
    if not rows:
        raise InputError(f"{where}: lists no cases; expected at least one")

    cases, seen = [], {}
    for i, row in enumerate(rows):
        line = f"row {i + 1}"
        if "__extra__" in row:
            problems.append(f"{line}: {len(row['__extra__'])} cells more than the header's {len(header)} columns")
        case_id = str(row.get("case_id") or "").strip()
        if not case_id:
            problems.append(f"{line}: empty case_id")
            case_id = f"<row {i + 1}>"
        elif case_id in seen:
            problems.append(f"case {case_id}: case_id repeated (rows {seen[case_id] + 1} and {i + 1})")
        else:
            seen[case_id] = i
        split = str(row.get("split") or "").strip()
        if split not in SPLITS:
            problems.append(f"case {case_id}, column split: {split!r} is not one of {list(SPLITS)}")
        paths = {}
        for col in IMAGE_COLUMNS:
            value = row.get(col)
            text = "" if value is None else str(value).strip()
            if not text:
                if col in REQUIRED:
                    problems.append(f"case {case_id}, column {col}: empty; expected a path")
                continue
            p = Path(text).expanduser()
            paths[col] = p if p.is_absolute() else (root / p)
        cases.append(Case(case_id, split, paths))
    _fail(problems, where)
    return Manifest(path=path, cases=tuple(cases))


# ------------------------------------------------------------------------------------------------
# Reading images


def _kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return "nifti"
    if name.endswith(".npy"):
        return "npy"
    if name.endswith(".h33"):
        return "interfile"
    if path.is_dir() or name.endswith((".dcm", ".ima")):
        return "dicom"
    raise InputError(f"{path}: unknown image format; expected .nii, .nii.gz, .npy, .h33, .dcm or a DICOM folder")


def _squeeze(shape: tuple[int, ...]) -> tuple[int, ...]:
    shape = tuple(int(s) for s in shape)
    while len(shape) > 2 and shape[-1] == 1:
        shape = shape[:-1]
    return shape


def image_shape(path: str | Path, column: str = "input") -> tuple[int, ...]:
    """Shape of the image at ``path`` after dropping trailing length-1 axes; reads headers only
    for NIfTI and ``.npy`` (DICOM and Interfile are read whole)."""
    path = Path(path)
    kind = _kind(path)
    try:
        if kind == "nifti":
            nib = require("nibabel", "dicom")
            return _squeeze(nib.load(str(path)).shape)
        if kind == "npy":
            return _squeeze(np.load(path, mmap_mode="r").shape)
    except SpectdlError:
        raise
    except Exception as exc:  # nibabel raises its own ImageFileError, numpy ValueError or OSError
        raise InputError(f"{path}: cannot be read ({type(exc).__name__}: {exc})") from None
    return tuple(read_case_image(path, column).shape)


def read_case_image(path: str | Path, column: str = "input") -> torch.Tensor:
    """The image of manifest column ``column`` at ``path``, as a tensor ``[X, Y(, Z)]`` without its
    geometry: float32, or int64 for ``organ_labels``; a DICOM folder is read as a CT series for
    column ``ct``, else as an NM/PT volume."""
    path = Path(path)
    kind = _kind(path)
    if not path.exists():
        raise InputError(f"{path}: not found")
    if kind == "npy":
        try:
            arr = np.load(path)
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: cannot be read as .npy ({exc})") from None
        data = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    elif kind == "nifti":
        nib = require("nibabel", "dicom")
        shape = image_shape(path)
        if len(shape) == 2:  # spectdl.io.read_nifti reads volumes only; a planar image is [X, Y]
            arr = np.asarray(nib.load(str(path)).dataobj, dtype=np.float32)
            data = torch.from_numpy(arr.reshape(shape))
        else:
            from spectdl.io import read_nifti

            data = read_nifti(path).data
    elif kind == "interfile":
        from spectdl.io import read_interfile_volume

        data = read_interfile_volume(path).data
    else:
        from spectdl.io import read_ct_series, read_volume_series

        data = (read_ct_series(path) if column == "ct" else read_volume_series(path)).data
    data = data.reshape(_squeeze(tuple(data.shape))).to(torch.float32)
    if column == "organ_labels":
        return torch.round(data).to(torch.int64)
    return data


def validate_manifest(manifest: Manifest | str | Path, check_shapes: bool = True,
                      cases: list[Case] | None = None) -> dict[str, dict[str, tuple[int, ...]]]:
    """Check every file of the manifest and report all problems at once.

    Problems: a file or folder that does not exist, a file that cannot be read, and (with
    ``check_shapes``) an image whose shape differs from the case's ``input``. Each line of the
    :class:`InputError` names the case, the column and the path.

    Args:
        manifest: a :class:`Manifest` or the path of a manifest file.
        check_shapes: read the shapes (headers only for NIfTI and ``.npy``) and compare them.
        cases: check only these cases (default: all).

    Returns:
        ``{case_id: {column: shape}}`` (empty dicts without ``check_shapes``); kept on the manifest
        so that datasets do not read the headers again.
    """
    if not isinstance(manifest, Manifest):
        manifest = load_manifest(manifest)
    todo = manifest.cases if cases is None else cases
    problems: list[str] = []
    shapes: dict[str, dict[str, tuple[int, ...]]] = {}
    for case in todo:
        found: dict[str, tuple[int, ...]] = {}
        for col, p in case.paths.items():
            label = f"case {case.case_id}, column {col}"
            if not p.exists():
                problems.append(f"{label}: file not found: {p}")
                continue
            if not check_shapes:
                continue
            try:
                found[col] = image_shape(p, col)
            except Exception as exc:  # noqa: BLE001 - every failure to read is one problem of the list
                problems.append(f"{label}: cannot be read: {p} ({exc})")
        if check_shapes and "input" in found:
            ref = found["input"]
            for col, shape in found.items():
                if col != "input" and shape != ref:
                    problems.append(
                        f"case {case.case_id}, column {col}: shape {shape} differs from the input's {ref}: {case.paths[col]}"
                    )
        shapes[case.case_id] = found
    _fail(problems, f"manifest {manifest.path}")
    if check_shapes:
        manifest._shapes.update(shapes)
    return shapes


def manifest_inputs(path: str | Path) -> list[Path]:
    """A data manifest and the paths it reads, the inputs an output must never overwrite: a case
    manifest (CSV/YAML) and every file or folder its cases list, or a simulation (its folder or
    ``manifest.json``) and its shards. A manifest that cannot be read gives only its own path (its
    reader reports the reasons when it is read)."""
    path = Path(path)
    found = [path]
    try:
        if path.is_dir() or path.suffix == ".json":
            folder = path if path.is_dir() else path.parent
            found += sorted(folder.glob("*.h5"))
            if path.is_dir():
                found.append(path / "manifest.json")
        elif path.is_file():
            found += [Path(v) for case in load_manifest(path).cases for v in case.paths.values()]
    except (SpectdlError, OSError, ValueError):
        pass
    return found
