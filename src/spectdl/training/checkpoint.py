"""Checkpoints that load without unpickling: a safetensors file of tensors plus a JSON sidecar.

Format (version 1)
------------------
A checkpoint is named by its sidecar, e.g. ``checkpoints/last.json``; the tensors live beside it in
``last.<digest>.safetensors``, where ``<digest>`` is the first 16 hex digits of the file's SHA-256.
The sidecar holds::

    format, format_version         "spectdl.checkpoint", 1
    weights_file, weights_sha256    the tensor file and its full SHA-256 (checked on load)
    spectdl                         the metadata: task, model {name, kwargs}, in_channels,
                                    out_channels, modality, epoch, epochs_completed, global_step,
                                    config, metrics, network_prefix, versions
    tree                            everything else (optimiser state, loop progress, RNG, ...)
                                    with each tensor replaced by {"$tensor": "<key in the file>"}

Network weights are the tensors under ``state_dict`` whose key starts with
``spectdl.network_prefix`` (``"net."``). Optimiser state is a tree like any other: its tensors (Adam
moments, step counts) in the safetensors file, its numbers and settings in JSON. Nothing in a
checkpoint is executable; loading reads JSON and safetensors only, so an untrusted file cannot run
code.

Atomic writes
-------------
The tensor file is written under a temporary name, synced and renamed to its content-addressed
name; the sidecar is then written the same way and renamed over the old sidecar, which is the
single commit point. A kill at any moment (Ctrl-C, SIGKILL, power loss after the sync) leaves
either the old checkpoint or the new one, both whole. Older tensor files of the same name are
removed only after the commit.

The tree encoding keeps what JSON cannot: tuples (``{"$tuple": [...]}``), dicts with non-string
keys such as the integer parameter ids of an optimiser state (``{"$dict": [[key, value], ...]}``),
non-finite floats (``{"$float": "nan"}``) and numpy arrays (``{"$ndarray": key}``).
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Mapping, Union

import numpy as np
import torch
from torch import nn

from spectdl.errors import InputError, require
# The metadata layout is defined in meta.py (see there why); importers of this module still find it here.
from spectdl.training.meta import CORE_META_FIELDS, META_FIELDS, META_KEY, NETWORK_PREFIX  # noqa: F401

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "checkpoint_path",
    "load_checkpoint",
    "load_model_from_checkpoint",
    "read_checkpoint",
    "save_checkpoint",
    "write_checkpoint",
]

FORMAT = "spectdl.checkpoint"
FORMAT_VERSION = 1

PathLike = Union[str, Path]


# --------------------------------------------------------------------------------------------------
# Tree <-> (JSON, tensors)


def _encode(obj: Any, path: list[str], tensors: dict[str, torch.Tensor]) -> Any:
    where = "/".join(path) or "<root>"
    if isinstance(obj, (torch.Tensor, np.ndarray)):
        tag = "$tensor" if isinstance(obj, torch.Tensor) else "$ndarray"
        t = obj.detach() if isinstance(obj, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(obj))
        if t.layout is not torch.strided:
            raise InputError(f"checkpoint: {where} is a {t.layout} tensor; expected a dense tensor")
        key = where if where not in tensors else f"{where}#{len(tensors)}"
        # A private contiguous copy: safetensors refuses views that share storage.
        tensors[key] = t.to("cpu", copy=True).contiguous()
        return {tag: key}
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, numbers.Integral):
        return int(obj)
    if isinstance(obj, numbers.Real):
        value = float(obj)
        return value if math.isfinite(value) else {"$float": repr(value)}
    if isinstance(obj, Mapping):
        if all(isinstance(k, str) and not k.startswith("$") for k in obj):
            return {k: _encode(v, path + [k], tensors) for k, v in obj.items()}
        return {"$dict": [[_encode(k, path + ["<key>"], {}), _encode(v, path + [str(k)], tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"$tuple": [_encode(v, path + [str(i)], tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, path + [str(i)], tensors) for i, v in enumerate(obj)]
    raise InputError(
        f"checkpoint: {where} is a {type(obj).__name__}; expected tensors, numbers, strings, None, "
        "lists, tuples or dicts (arbitrary objects would need pickle, which spectdl never uses)"
    )


def _decode(obj: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if len(obj) == 1:
        (tag, value), = obj.items()
        if tag in ("$tensor", "$ndarray"):
            if value not in tensors:
                raise InputError(f"checkpoint: tensor {value!r} is named in the sidecar but missing from the weights file")
            return tensors[value] if tag == "$tensor" else tensors[value].numpy()
        if tag == "$float":
            return float(value)
        if tag == "$tuple":
            return tuple(_decode(v, tensors) for v in value)
        if tag == "$dict":
            return {_decode(k, tensors): _decode(v, tensors) for k, v in value}
    return {k: _decode(v, tensors) for k, v in obj.items()}


# --------------------------------------------------------------------------------------------------
# Files


def checkpoint_path(path: PathLike) -> Path:
    """The sidecar path of a checkpoint: ``path`` itself when it ends in ``.json``, else ``path + ".json"``."""
    p = Path(path)
    if p.suffix == ".safetensors":
        raise InputError(
            f"checkpoint path {p}: name the JSON sidecar (e.g. {p.name.split('.')[0]}.json), not the tensor file"
        )
    return p if p.suffix == ".json" else p.with_name(p.name + ".json")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows cannot open folders
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _temp_name(folder: Path, stem: str) -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{stem}.", suffix=".tmp", dir=folder)
    os.close(fd)
    return Path(name)


def _weights_pattern(stem: str) -> re.Pattern:
    return re.compile(rf"^{re.escape(stem)}\.[0-9a-f]{{16}}\.safetensors$")


def write_checkpoint(path: PathLike, tree: Mapping[str, Any]) -> Path:
    """Write ``tree`` (nested dicts/lists of tensors and plain values) as a checkpoint, atomically.

    ``tree[META_KEY]`` (``"spectdl"``), when present, is stored readable at the top of the sidecar.
    Returns the sidecar path. See the module docstring for the format and the commit protocol.
    """
    st = require("safetensors.torch", "train")
    sidecar = checkpoint_path(path)
    folder = sidecar.parent
    folder.mkdir(parents=True, exist_ok=True)
    stem = sidecar.name[: -len(".json")]

    body = {k: v for k, v in tree.items() if k != META_KEY}
    meta = tree.get(META_KEY, {})
    tensors: dict[str, torch.Tensor] = {}
    encoded_tree = _encode(body, [], tensors)
    encoded_meta = _encode(meta, [META_KEY], {})  # metadata holds no tensors; _encode raises if it does

    tmp_weights = _temp_name(folder, stem)
    tmp_sidecar = None
    try:
        st.save_file(tensors, str(tmp_weights), metadata={"format": FORMAT})
        with open(tmp_weights, "rb+") as f:
            os.fsync(f.fileno())
        digest = _sha256(tmp_weights)
        weights = folder / f"{stem}.{digest[:16]}.safetensors"
        os.replace(tmp_weights, weights)

        document = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "weights_file": weights.name,
            "weights_sha256": digest,
            META_KEY: encoded_meta,
            "tree": encoded_tree,
        }
        tmp_sidecar = _temp_name(folder, stem)
        with open(tmp_sidecar, "w", encoding="utf-8") as f:
            json.dump(document, f, indent=1, allow_nan=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_sidecar, sidecar)  # the commit point
        _fsync_dir(folder)
    except BaseException:
        for tmp in (tmp_weights, tmp_sidecar):
            if tmp is not None and tmp.exists():
                tmp.unlink()
        raise
    pattern = _weights_pattern(stem)
    for old in folder.iterdir():
        if old.name != weights.name and pattern.match(old.name):
            old.unlink(missing_ok=True)
    return sidecar


def read_checkpoint(path: PathLike, map_location: Union[str, torch.device, None] = "cpu") -> dict[str, Any]:
    """The tree written by :func:`write_checkpoint`, with its metadata under ``"spectdl"``.

    Reads JSON and safetensors only (no pickle). Checks the format, the version and the SHA-256 of
    the tensor file; any mismatch raises InputError naming the file.
    """
    st = require("safetensors.torch", "train")
    sidecar = checkpoint_path(path)
    try:
        text = sidecar.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"checkpoint {sidecar}: file not found") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"checkpoint {sidecar}:{exc.lineno}:{exc.colno}: not valid JSON ({exc.msg})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        found = document.get("format") if isinstance(document, dict) else type(document).__name__
        raise InputError(f"checkpoint {sidecar}: format {found!r}; expected {FORMAT!r}")
    version = document.get("format_version")
    if version != FORMAT_VERSION:
        raise InputError(f"checkpoint {sidecar}: format_version {version!r}; expected {FORMAT_VERSION}")
    weights = sidecar.parent / str(document.get("weights_file"))
    if not weights.is_file():
        raise InputError(f"checkpoint {sidecar}: its tensor file {weights.name} is missing")
    digest = _sha256(weights)
    if digest != document.get("weights_sha256"):
        raise InputError(
            f"checkpoint {sidecar}: {weights.name} has SHA-256 {digest[:16]}…, expected "
            f"{str(document.get('weights_sha256'))[:16]}… (the file was modified or truncated)"
        )
    device = "cpu" if map_location is None else str(torch.device(map_location))
    tensors = st.load_file(str(weights), device=device)
    tree = _decode(document.get("tree", {}), tensors)
    tree[META_KEY] = _decode(document.get(META_KEY, {}), {})
    return tree


def load_checkpoint(path: PathLike, map_location: Union[str, torch.device, None] = "cpu") -> dict[str, Any]:
    """Load a checkpoint as a dict: ``state_dict``, ``optimizer_states``, ``epoch``, ... and the
    metadata under ``"spectdl"`` (see the module docstring). Safe: JSON and safetensors only."""
    return read_checkpoint(path, map_location)


def save_checkpoint(
    path: PathLike,
    model: nn.Module,
    *,
    model_name: str,
    model_kwargs: Mapping[str, Any] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    epoch: int | None = None,
    config: Mapping[str, Any] | None = None,
    modality: str = "spect",
    task: str = "supervised",
    metrics: Mapping[str, float] | None = None,
    extra_meta: Mapping[str, Any] | None = None,
) -> Path:
    """Save a network (and optionally its optimiser) in the spectdl checkpoint format.

    Args:
        path: the sidecar path (``.json`` is added when missing).
        model: the network; its ``state_dict`` is stored under ``state_dict/net.<key>``.
        model_name: its name in :mod:`spectdl.models` (``build(model_name, **model_kwargs)``
            must rebuild it, for :func:`load_model_from_checkpoint`).
        model_kwargs: the constructor arguments.
        optimizer: stored under ``optimizer_states[0]`` when given.
        epoch: the 0-based epoch just completed (``epochs_completed = epoch + 1``).
        config: the training config as a plain dict, if any.
        modality: what the network reads (``"spect"``, ``"projections"``, ...).
        task: ``"supervised"``, ``"gan"`` or ``"two_stage"``.
        metrics: numbers to record (e.g. validation scores).
        extra_meta: further metadata entries (e.g. ``normalization``), JSON-compatible values.

    Returns the sidecar path. The write is atomic (see the module docstring).
    """
    if not isinstance(model, nn.Module):
        raise InputError(f"model: expected an nn.Module, found {type(model).__name__}")
    tree: dict[str, Any] = {
        "state_dict": {NETWORK_PREFIX + k: v for k, v in model.state_dict().items()},
        "epoch": epoch,
    }
    if optimizer is not None:
        tree["optimizer_states"] = [optimizer.state_dict()]
    tree[META_KEY] = network_meta(
        model, model_name, model_kwargs or {}, task=task, modality=modality, config=config,
        epoch=epoch, epochs_completed=None if epoch is None else epoch + 1, metrics=metrics,
        **dict(extra_meta or {}),
    )
    return write_checkpoint(path, tree)


def network_meta(
    network: nn.Module,
    model_name: str,
    model_kwargs: Mapping[str, Any],
    *,
    task: str,
    modality: str,
    config: Mapping[str, Any] | None = None,
    epoch: int | None = None,
    epochs_completed: int | None = None,
    global_step: int | None = None,
    metrics: Mapping[str, float] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The ``"spectdl"`` metadata block of a checkpoint (see the module docstring); ``extra`` adds
    entries such as ``normalization`` or ``inference`` settings that :mod:`spectdl.inference` reads."""
    import spectdl

    clash = sorted(set(extra) & set(CORE_META_FIELDS))
    if clash:
        raise InputError(f"extra metadata: key {clash[0]!r} is written by spectdl itself; expected other names")

    return {
        "task": task,
        "model": {"name": model_name, "kwargs": dict(model_kwargs)},
        "in_channels": getattr(network, "in_channels", None),
        "out_channels": getattr(network, "out_channels", None),
        "modality": modality,
        "network_prefix": NETWORK_PREFIX,
        "epoch": epoch,
        "epochs_completed": epochs_completed,
        "global_step": global_step,
        "metrics": dict(metrics or {}),
        "config": dict(config) if config is not None else None,
        "spectdl_version": spectdl.__version__,
        "torch_version": torch.__version__,
        **extra,
    }


def load_model_from_checkpoint(
    path: PathLike, map_location: Union[str, torch.device, None] = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the network of a checkpoint and load its weights: ``(model in eval mode, metadata)``.

    The network is rebuilt from the metadata (``spectdl.models.build(name, **kwargs)``; for
    task ``two_stage`` the SPECTnet of mapper and decoder) and loaded strictly: a missing or extra
    weight raises InputError. The metadata is the sidecar's ``spectdl`` block.
    """
    from spectdl.training.networks import build_from_meta

    tree = read_checkpoint(path, map_location)
    meta = tree[META_KEY]
    model = build_from_meta(meta, where=f"checkpoint {checkpoint_path(path)}")
    prefix = meta.get("network_prefix", NETWORK_PREFIX)
    state = {k[len(prefix):]: v for k, v in tree.get("state_dict", {}).items() if k.startswith(prefix)}
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise InputError(
            f"checkpoint {checkpoint_path(path)}: weights do not fit model {meta['model']['name']!r}; "
            f"missing {result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}"
        )
    if map_location is not None:
        model.to(torch.device(map_location))
    return model.eval(), meta
