"""A torch Dataset over the cases of a manifest: whole volumes, axial slices or random patches."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np
import torch

from spectdl.data._dataset import SeededDataset
from spectdl.data.manifest import OPTIONAL, Case, Manifest, load_manifest, read_case_image, validate_manifest
from spectdl.data.normalization import STATISTICS as VOLUME_STATISTICS, volume_statistic
from spectdl.data.transforms.base import Compose, Transform
from spectdl.data.transforms.crop import RandomCrop
from spectdl.errors import InputError

__all__ = ["ManifestDataset"]

_MASKS = ("lesion_mask", "organ_labels")


class ManifestDataset(SeededDataset):
    """The cases of one split of a manifest, as dict samples.

    Each sample holds ``"input"`` (``input_columns`` stacked as channels, e.g. ``("input", "ct")``),
    ``"target"``, every optional column loaded (``"ct"``, ``"lesion_mask"`` as 0/1 floats,
    ``"organ_labels"`` as int64), each ``[1, *spatial]``, and ``"case_id"``.

    Modes:

    * ``"volume"``: one sample per case, the whole image ``[C, X, Y, Z]`` (or ``[C, X, Y]`` for 2-D).
    * ``"slices"``: one sample per axial slice of every case, ``[C, X, Y]``, plus ``"slice"`` (z index).
    * ``"patches"``: ``patches_per_case`` samples per case, each a random patch of ``patch_size``
      (e.g. ``(192, 192)`` for planar scans), drawn like any random transform (per seed, epoch
      and index) before ``transform``.

    Args:
        manifest: a :class:`Manifest` or a manifest path (pass one :class:`Manifest` to the
            train, val and test datasets so that its files are validated once).
        split: ``"train"``, ``"val"`` or ``"test"``.
        mode, patch_size, patches_per_case: see above.
        input_columns: columns stacked into ``"input"``.
        columns: optional columns to load as extra keys; default: those that some case of the split
            has. A missing mask is all zeros; a missing ``ct`` is an error.
        transform: a spectdl transform (seeded per ``(seed, epoch, index)``) or any callable.
        seed: seed of the random transforms and patch positions.
        validate: run :func:`validate_manifest` on the whole manifest (every split) unless it was
            run already, so that every missing file or shape mismatch is reported before training.
        cache_size: cases kept in memory per process (useful for slices and patches).
        dtype: floating dtype of the images.
        record_params: add ``"transform_params"`` (JSON) to each sample, for :func:`replay`.
    """

    def __init__(
        self,
        manifest: Manifest | str | Path,
        split: str,
        *,
        mode: Literal["volume", "slices", "patches"] = "volume",
        patch_size: Sequence[int] | None = None,
        patches_per_case: int = 1,
        input_columns: Sequence[str] = ("input",),
        columns: Sequence[str] | None = None,
        transform: Transform | Callable | None = None,
        seed: int = 0,
        validate: bool = True,
        cache_size: int = 2,
        dtype: torch.dtype = torch.float32,
        record_params: bool = False,
        normalize: str | None = None,
        normalization: Any = None,
        target_statistic: str | None = "mean",
    ):
        super().__init__(transform, seed, record_params)
        if normalization is not None:
            from spectdl.data.normalization import Normalization

            if normalize is not None:
                raise InputError("normalize, normalization: give one of them, not both")
            if not isinstance(normalization, Normalization):
                normalization = Normalization.from_meta({"normalization": normalization}, where="normalization")
        self.volume_normalization = normalization
        self.target_statistic = target_statistic
        if normalize is not None and normalize not in VOLUME_STATISTICS[1:]:
            raise InputError(f"normalize: expected one of {VOLUME_STATISTICS[1:]} or None, found {normalize!r}")
        self.normalize = normalize
        self.manifest = manifest if isinstance(manifest, Manifest) else load_manifest(manifest)
        self.cases: list[Case] = self.manifest.split(split)
        if not self.cases:
            raise InputError(f"split: the manifest {self.manifest.path} has no {split!r} cases")
        self.split = split
        if mode not in ("volume", "slices", "patches"):
            raise InputError(f"mode: expected 'volume', 'slices' or 'patches', found {mode!r}")
        self.mode = mode
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise InputError(f"dtype: expected a floating torch.dtype, found {dtype!r}")
        self.dtype = dtype
        self.input_columns = self._columns("input_columns", input_columns, ("input", "target") + OPTIONAL)
        present = [c for c in OPTIONAL if any(c in case.paths for case in self.cases)]
        self.columns = present if columns is None else self._columns("columns", columns, OPTIONAL)
        needs_ct = "ct" in self.columns or "ct" in self.input_columns
        lacking = [c.case_id for c in self.cases if needs_ct and "ct" not in c.paths]
        if lacking:
            raise InputError(f"columns: 'ct' is used but cases {lacking} have no ct path")
        for col in self.input_columns:
            if col not in ("input", "target", "ct"):
                missing = [c.case_id for c in self.cases if col not in c.paths]
                if missing:
                    raise InputError(f"input_columns: {col!r} is empty for cases {missing}")
        if validate and not self.manifest.validated:
            validate_manifest(self.manifest, check_shapes=True)
        self.patch_size = None
        if mode == "patches":
            if patch_size is None:
                raise InputError("patch_size: mode 'patches' needs a patch size, e.g. (192, 192)")
            self.patch_size = [int(s) for s in patch_size]
        if isinstance(patches_per_case, bool) or not isinstance(patches_per_case, int) or patches_per_case < 1:
            raise InputError(f"patches_per_case: expected a positive integer, found {patches_per_case!r}")
        self.patches_per_case = patches_per_case
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 0:
            raise InputError(f"cache_size: expected an integer >= 0, found {cache_size!r}")
        self.cache_size = cache_size
        self._cache: OrderedDict[str, dict[str, torch.Tensor]] = OrderedDict()
        self.items = self._items()

    @staticmethod
    def _columns(name: str, cols, allowed) -> list[str]:
        cols = [cols] if isinstance(cols, str) else list(cols)
        bad = [c for c in cols if c not in allowed]
        if bad:
            raise InputError(f"{name}: {bad} are not manifest columns; expected among {list(allowed)}")
        return cols

    def _items(self) -> list[tuple[int, int]]:
        if self.mode == "volume":
            return [(i, 0) for i in range(len(self.cases))]
        if self.mode == "patches":
            return [(i, j) for i in range(len(self.cases)) for j in range(self.patches_per_case)]
        items = []
        for i, case in enumerate(self.cases):
            shape = self.manifest._shapes.get(case.case_id, {}).get("input")
            if shape is None:
                shape = tuple(self._load(i)["input"].shape)
            if len(shape) != 3:
                raise InputError(f"mode: 'slices' needs 3-D images; case {case.case_id} input has shape {shape}")
            items.extend((i, z) for z in range(shape[2]))
        return items

    def _load(self, i: int) -> dict[str, torch.Tensor]:
        case = self.cases[i]
        hit = self._cache.get(case.case_id)
        if hit is not None:
            self._cache.move_to_end(case.case_id)
            return hit
        images: dict[str, torch.Tensor] = {}
        for col in dict.fromkeys(list(self.input_columns) + ["target"] + list(self.columns)):
            if col in case.paths:
                images[col] = read_case_image(case.paths[col], col)
        if self.normalize is not None:
            # Whole-volume divisor of the first input column, applied to it and to the target, as
            # spectdl.inference applies it at enhancement time (see `normalization`).
            first = self.input_columns[0]
            s = volume_statistic(images[first], self.normalize)
            if not s > 0:
                raise InputError(f"case {case.case_id}: the {self.normalize} of {first!r} is {s}; cannot normalise")
            for col in dict.fromkeys([first, "target"]):
                images[col] = images[col].to(torch.float32) / s
        if self.volume_normalization is not None:
            # The whole volume's divisors and offsets, exactly as spectdl.inference will apply them;
            # the target by its own statistic (the bone SPECT recipe) unless target_statistic is None.
            cols = list(self.input_columns)
            x, scales = self.volume_normalization.apply(torch.stack([images[c].to(torch.float32) for c in cols]))
            for c, channel in zip(cols, x):
                images[c] = channel
            t = volume_statistic(images["target"], self.target_statistic) if self.target_statistic else scales[
                self.volume_normalization.output or 0]
            if not t > 0:
                raise InputError(f"case {case.case_id}: the {self.target_statistic} of 'target' is {t}; cannot normalise")
            images["target"] = images["target"].to(torch.float32) / t
        for col in self.columns:
            if col not in images and col in _MASKS:
                dtype = torch.int64 if col == "organ_labels" else torch.float32
                images[col] = torch.zeros(images["input"].shape, dtype=dtype)
        if self.cache_size:
            self._cache[case.case_id] = images
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return images

    def __len__(self) -> int:
        return len(self.items)

    @property
    def normalization(self) -> dict | None:
        """The checkpoint metadata that makes :mod:`spectdl.inference` scale inputs as this dataset does."""
        if self.volume_normalization is not None:
            return self.volume_normalization.to_meta()
        if self.normalize is None:
            return None
        return {"inputs": [self.normalize], "output": 0}

    def _typed(self, col: str, t: torch.Tensor) -> torch.Tensor:
        if col == "organ_labels":
            return t.to(torch.int64)
        if col == "lesion_mask":
            return (t > 0).to(self.dtype)
        return t.to(self.dtype)

    def __getitem__(self, k: int) -> dict[str, Any]:
        n = len(self)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not -n <= k < n:
            raise InputError(f"index: expected an integer in [0, {n}) for split {self.split!r}, found {k!r}")
        k = int(k) % n
        i, j = self.items[k]
        images = self._load(i)

        def view(t: torch.Tensor) -> torch.Tensor:
            return (t[..., j] if self.mode == "slices" else t).unsqueeze(0)

        sample: dict[str, Any] = {
            "input": torch.cat([view(self._typed(c, images[c])) for c in self.input_columns], 0),
            "target": view(self._typed("target", images["target"])),
        }
        for col in self.columns:
            sample[col] = view(self._typed(col, images[col]))
        sample["case_id"] = self.cases[i].case_id
        if self.mode == "slices":
            sample["slice"] = j
        if self.mode == "patches":
            return self._patch(sample, k)
        return self._transform(sample, k)

    def _patch(self, sample: dict[str, Any], k: int) -> dict[str, Any]:
        crop = RandomCrop(self.patch_size)
        if self.transform is None or isinstance(self.transform, Transform):
            steps = [crop] if self.transform is None else [crop, self.transform]
            return self._transform(sample, k, Compose(steps))
        out, _ = crop(sample, self.generator(k))
        return self.transform(out)
