"""Checkpoints that load without unpickling: write, read and save them (the public entry points).

A checkpoint is a safetensors file of tensors plus a JSON sidecar that names it; the layout and the
encoding of the tree are :mod:`spectdl.training.checkpoint_format`, the metadata block
:mod:`spectdl.training.meta`, and the rebuilding of a network from a checkpoint
:func:`spectdl.training.networks.load_model_from_checkpoint`.

Atomic writes
-------------
Both files go through :func:`spectdl.io.atomic.atomic_write` with ``fsync=True``: the tensor file
is written under a temporary name, synced and renamed to its content-addressed name; the sidecar is
then written the same way and renamed over the old sidecar, which is the single commit point. A kill
at any moment (Ctrl-C, SIGKILL, power loss after the sync) leaves either the old checkpoint or the
new one, both whole. Older tensor files of the same name are removed only after the commit.

Permissions: checkpoint files get the user's umask like every other spectdl output (usually
``0o644``), not the private ``0o600`` of earlier versions. A checkpoint is a result to share
(``spectdl enhance`` on another account, a model published with a paper) and holds no secrets;
a folder that must stay private is protected by its own permissions or a stricter umask.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping, Union

import torch
from torch import nn

from spectdl.errors import InputError, require
from spectdl.io.atomic import atomic_write, file_sha256
from spectdl.training.checkpoint_format import (
    FORMAT,
    decode_tree,
    encode_tree,
    parse_sidecar,
    sidecar_document,
    temporary_file_pattern,
    weights_file_name,
    weights_file_pattern,
)
from spectdl.training.meta import META_KEY, NETWORK_PREFIX, network_meta

__all__ = [
    "checkpoint_path",
    "load_checkpoint",
    "read_checkpoint",
    "remove_checkpoint",
    "remove_temporary_files",
    "save_checkpoint",
    "write_checkpoint",
]

PathLike = Union[str, Path]

_PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".bin", ".tar")


def checkpoint_path(path: PathLike) -> Path:
    """The sidecar path of a checkpoint: ``path`` itself when it ends in ``.json``, else ``path + ".json"``."""
    p = Path(path)
    if p.suffix.lower() in _PICKLE_SUFFIXES:
        raise InputError(
            f"checkpoint path {p}: a {p.suffix} file is a pickle (torch.save/Lightning) checkpoint, which spectdl "
            "never loads (unpickling can run code); expected the JSON sidecar of a spectdl checkpoint (e.g. best.json)"
        )
    if p.suffix == ".safetensors":
        raise InputError(
            f"checkpoint path {p}: name the JSON sidecar (e.g. {p.name.split('.')[0]}.json), not the tensor file"
        )
    return p if p.suffix == ".json" else p.with_name(p.name + ".json")


def write_checkpoint(path: PathLike, tree: Mapping[str, Any]) -> Path:
    """Write ``tree`` (nested dicts/lists of tensors and plain values) as a checkpoint, atomically.

    ``tree[META_KEY]`` (``"spectdl"``), when present, is stored readable at the top of the sidecar.
    Returns the sidecar path. The format is that of :mod:`spectdl.training.checkpoint_format`; the
    commit protocol is in the module docstring.
    """
    st = require("safetensors.torch", "train")
    sidecar = checkpoint_path(path)
    folder = sidecar.parent
    folder.mkdir(parents=True, exist_ok=True)
    stem = sidecar.name[: -len(".json")]

    body = {k: v for k, v in tree.items() if k != META_KEY}
    meta = tree.get(META_KEY, {})
    tensors: dict[str, torch.Tensor] = {}
    encoded_tree = encode_tree(body, [], tensors)
    encoded_meta = encode_tree(meta, [META_KEY], {})  # metadata holds no tensors; encode_tree raises if it does

    # Serialised in memory first: the tensor file's name is its digest, which must be known before
    # the file is committed under that name.
    data = st.save(tensors, metadata={"format": FORMAT})
    digest = hashlib.sha256(data).hexdigest()
    weights = atomic_write(folder / weights_file_name(stem, digest), lambda tmp: tmp.write_bytes(data),
                           overwrite=True, fsync=True)
    document = sidecar_document(weights.name, digest, encoded_meta, encoded_tree)
    text = json.dumps(document, indent=1, allow_nan=False)
    # The commit point: until this rename the old sidecar names the old, still present, tensor file.
    atomic_write(sidecar, lambda tmp: tmp.write_text(text, encoding="utf-8"), overwrite=True, fsync=True)
    pattern = weights_file_pattern(stem)
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
        raw = sidecar.read_bytes()
    except FileNotFoundError:
        raise InputError(f"checkpoint {sidecar}: file not found") from None
    except IsADirectoryError:
        raise InputError(f"checkpoint {sidecar}: is a folder; expected the JSON sidecar of a checkpoint") from None
    except OSError as exc:
        if sidecar.is_dir():
            raise InputError(f"checkpoint {sidecar}: is a folder; expected the JSON sidecar of a checkpoint") from None
        raise InputError(f"checkpoint {sidecar}: cannot be read ({exc.strerror or exc})") from None
    if raw[:1] == b"\x80" or raw[:2] == b"PK":
        raise InputError(f"checkpoint {sidecar}: a pickle or zip (torch.save) file, not a JSON sidecar; spectdl "
                         "never unpickles; expected a checkpoint written by spectdl (JSON + safetensors)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"checkpoint {sidecar}: not UTF-8 text at byte {exc.start}; expected a JSON sidecar") from None
    document = parse_sidecar(text, sidecar)
    name = document.get("weights_file")
    if not isinstance(name, str) or not name or Path(name).name != name:
        raise InputError(f"checkpoint {sidecar}: weights_file {name!r}; expected the name of a .safetensors "
                         "file beside the sidecar")
    weights = sidecar.parent / name
    if not name.endswith(".safetensors"):
        raise InputError(f"checkpoint {sidecar}: weights_file {name!r}; expected a .safetensors file (spectdl never "
                         "loads pickle files)")
    if not weights.is_file():
        raise InputError(f"checkpoint {sidecar}: its tensor file {weights.name} is missing")
    digest = file_sha256(weights)
    if digest != document.get("weights_sha256"):
        raise InputError(
            f"checkpoint {sidecar}: {weights.name} has SHA-256 {digest[:16]}…, expected "
            f"{str(document.get('weights_sha256'))[:16]}… (the file was modified or truncated)"
        )
    device = "cpu" if map_location is None else str(torch.device(map_location))
    try:
        tensors = st.load_file(str(weights), device=device)
    except (OSError, RuntimeError, ValueError) as exc:  # SafetensorError is an Exception; caught below too
        raise InputError(f"checkpoint {sidecar}: {weights.name} is not a readable safetensors file ({exc})") from None
    except Exception as exc:
        if type(exc).__name__ != "SafetensorError":
            raise
        raise InputError(f"checkpoint {sidecar}: {weights.name} is not a readable safetensors file ({exc})") from None
    try:
        where = f"checkpoint {sidecar}"  # decode_tree's errors name the file and the tag
        tree = decode_tree(document.get("tree", {}), tensors, where)
        tree[META_KEY] = decode_tree(document.get(META_KEY, {}), {}, where)
    except InputError:
        raise
    except (TypeError, ValueError, AttributeError) as exc:
        raise InputError(f"checkpoint {sidecar}: malformed tree or metadata ({type(exc).__name__}: {exc})") from None
    if not isinstance(tree, dict) or not isinstance(tree.get(META_KEY), dict):
        raise InputError(f"checkpoint {sidecar}: tree and {META_KEY} must be JSON objects")
    return tree


def remove_checkpoint(path: PathLike) -> None:
    """Delete a checkpoint: its sidecar and every tensor file written under its name (absent files
    are not an error)."""
    sidecar = checkpoint_path(path)
    stem = sidecar.name[: -len(".json")]
    sidecar.unlink(missing_ok=True)
    pattern = weights_file_pattern(stem)
    for f in sidecar.parent.iterdir():
        if pattern.match(f.name):
            f.unlink(missing_ok=True)


def remove_temporary_files(folder: PathLike, stems: tuple[str, ...] = ("last", "best")) -> list[Path]:
    """Delete the temporary files that killed writes of checkpoints ``stems`` left in ``folder``
    (only names of :func:`~spectdl.training.checkpoint_format.temporary_file_pattern`; committed
    files are never touched). Returns the files removed; a missing folder is not an error."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    patterns = [temporary_file_pattern(stem) for stem in stems]
    removed = []
    for f in sorted(folder.iterdir()):
        if any(p.match(f.name) for p in patterns) and f.is_file() and not f.is_symlink():
            f.unlink(missing_ok=True)
            removed.append(f)
    return removed


def load_checkpoint(path: PathLike, map_location: Union[str, torch.device, None] = "cpu") -> dict[str, Any]:
    """Load a checkpoint as a dict: ``state_dict``, ``optimizer_states``, ``epoch``, ... and the
    metadata under ``"spectdl"`` (see :mod:`spectdl.training.meta`). Safe: JSON and safetensors only."""
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
            must rebuild it, for :func:`spectdl.training.networks.load_model_from_checkpoint`).
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
