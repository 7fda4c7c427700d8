"""Study configs: one typed config per study, its scales as overrides, and the config hash.

A study's YAML file (``spectdl/configs/studies/<name>.yaml``) holds::

    defaults: {...}          # every field of the study's config section
    scales:
      smoke: {...}           # seconds: the test suite runs every study at this scale
      quick: {...}           # <= 10 minutes on a 2-core CPU; shows the paper's direction of effect
      paper: {...}           # the paper's sizes and epochs (GPU)

The resolved config is ``defaults ← scales[scale] ← --config FILE ← --set key=value …`` (deep
merges, later wins), checked by :mod:`spectdl.typed_config` so that an unknown key or a value of
the wrong type is one error naming the dotted key. Its hash (:func:`config_hash`) identifies a run:
every stage's ``done.json`` records it and ``--resume`` refuses a run folder made with another.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from spectdl.errors import ConfigError
from spectdl.typed_config import Section, apply_overrides, read_yaml

SCALES = ("smoke", "quick", "paper")

#: Fields that say where or how a run executes, not what it computes; left out of the hash so a
#: run can be resumed on another device or with its data at another path.
_NOT_HASHED = ("device", "workers")


@dataclass(frozen=True)
class StudyConfig(Section):
    """Fields every study has.

    Attributes:
        scale: ``smoke``, ``quick`` or ``paper`` (set by the runner; recorded with the results).
        seed: the one seed every random draw of the run derives from.
        device: where simulation, training and inference run (``cpu``, ``cuda``, ``cuda:1``).
        workers: processes for simulation and reconstruction.
        data: a manifest of the user's own cases (CSV or YAML); when set, the study skips
            simulation and reconstruction and runs on those cases.
    """

    scale: str = "smoke"
    seed: int = 0
    device: str = "cpu"
    workers: int = 1
    data: Optional[str] = None

    def _check(self) -> None:
        if self.scale not in SCALES:
            raise ConfigError(f"scale: {self.scale!r}; expected one of {list(SCALES)}")
        if self.seed < 0:
            raise ConfigError(f"seed: expected an integer >= 0, found {self.seed}")
        if self.workers < 1:
            raise ConfigError(f"workers: expected an integer >= 1, found {self.workers}")
        import torch

        try:
            torch.device(self.device)
        except (RuntimeError, TypeError):
            raise ConfigError(f"device: {self.device!r} is not a device; expected cpu, cuda or cuda:N") from None


def train_config(raw: Mapping[str, Any], where: str = "train"):
    """A :class:`spectdl.training.TrainConfig` from a study's training section, its errors named
    from the study's root (``train.optim.lr: …``)."""
    from spectdl.training import TrainConfig

    try:
        return TrainConfig.from_dict(raw)
    except ConfigError as exc:
        raise ConfigError(f"{where}.{exc}") from None


def study_config_file(name: str) -> Path:
    """The shipped YAML of study ``name``."""
    return Path(str(resources.files("spectdl") / "configs" / "studies" / f"{name}.yaml"))


def deep_merge(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes`` merged in: nested mappings merge, every other value replaces."""
    out = copy.deepcopy(dict(base))
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_scales(path: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """``(defaults, {scale: overrides})`` of a study YAML file."""
    data = read_yaml(path)
    if not isinstance(data, Mapping) or not isinstance(data.get("defaults", {}), Mapping):
        raise ConfigError(f"{path}: expected a mapping with 'defaults' and 'scales'")
    scales = data.get("scales") or {}
    unknown = sorted(set(scales) - set(SCALES))
    if unknown:
        raise ConfigError(f"{path}: scales.{unknown[0]}: unknown scale; expected {list(SCALES)}")
    extra = sorted(set(data) - {"defaults", "scales"})
    if extra:
        raise ConfigError(f"{path}: {extra[0]}: unknown key; expected 'defaults' and 'scales'")
    return dict(data.get("defaults") or {}), {k: dict(v or {}) for k, v in scales.items()}


def resolve_config(config_class: type, study_file: Path, *, scale: str = "smoke", config_file: Path | None = None,
                   overrides: Sequence[str] = (), **fields: Any):
    """The checked config of a run (module docstring); ``fields`` (e.g. ``seed=1``, ``data=...``)
    are set last. Every error is a ConfigError naming the file or ``--set`` and the dotted key."""
    if scale not in SCALES:
        raise ConfigError(f"--scale: {scale!r}; expected one of {list(SCALES)}")
    defaults, scales = read_scales(study_file)
    raw = deep_merge(defaults, scales.get(scale, {}))
    if config_file is not None:
        user = read_yaml(config_file)
        if user is None:
            raise ConfigError(f"{config_file}: the file is empty; expected a mapping of the keys to change")
        if not isinstance(user, Mapping):
            raise ConfigError(f"{config_file}: expected a mapping of keys at the top level, found {type(user).__name__}")
        raw = deep_merge(raw, user)
        try:
            config_class.from_dict(raw)
        except ConfigError as exc:
            raise ConfigError(f"{config_file}: {exc}") from None
    raw = apply_overrides(config_class, raw, list(overrides))
    raw = deep_merge(raw, {"scale": scale, **{k: v for k, v in fields.items() if v is not None}})
    try:
        return config_class.from_dict(raw)
    except ConfigError as exc:
        where = "--set" if overrides else str(study_file)
        raise ConfigError(f"{where}: {exc}") from None


def _hashed(value: Any, top: bool = True) -> Any:
    if isinstance(value, Mapping):
        return {k: _hashed(v, False) for k, v in sorted(value.items()) if not (top and k in _NOT_HASHED)}
    if isinstance(value, (list, tuple)):
        return [_hashed(v, False) for v in value]
    return value


def config_hash(config: Section | Mapping[str, Any]) -> str:
    """SHA-256 (hex, 16 characters) of the config's canonical JSON, without the execution fields
    ``device`` and ``workers``."""
    d = config.to_dict() if isinstance(config, Section) else dict(config)
    text = json.dumps(_hashed(d), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def config_differences(a: Mapping[str, Any], b: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two plain config dicts (hashed fields only)."""
    a, b = _hashed(dict(a), not prefix), _hashed(dict(b), not prefix)
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, Mapping) and isinstance(vb, Mapping):
            out.extend(config_differences(va, vb, f"{prefix}{key}."))
        elif va != vb:
            out.append(f"{prefix}{key}")
    return out
