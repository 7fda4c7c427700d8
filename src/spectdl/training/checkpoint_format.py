"""The checkpoint format (version 1): how a tree of tensors and plain values becomes a safetensors
file plus a JSON sidecar, and back. No file is touched here; :mod:`spectdl.training.checkpoint`
writes and reads the files.

Layout
------
A checkpoint is named by its sidecar, e.g. ``checkpoints/last.json``; the tensors live beside it in
``last.<digest>.safetensors`` (:func:`weights_file_name`), where ``<digest>`` is the first 16 hex
digits of the file's SHA-256. The sidecar (:func:`sidecar_document`) holds::

    format, format_version         "spectdl.checkpoint", 1
    weights_file, weights_sha256    the tensor file and its full SHA-256 (checked on load)
    spectdl                         the metadata (see spectdl.training.meta): task, model {name,
                                    kwargs}, in_channels, out_channels, modality, epoch,
                                    epochs_completed, global_step, config, metrics,
                                    network_prefix, versions
    tree                            everything else (optimiser state, loop progress, RNG, ...)
                                    with each tensor replaced by {"$tensor": "<key in the file>"}

Network weights are the tensors under ``state_dict`` whose key starts with
``spectdl.network_prefix`` (``"net."``). Optimiser state is a tree like any other: its tensors (Adam
moments, step counts) in the safetensors file, its numbers and settings in JSON. Nothing in a
checkpoint is executable; decoding reads JSON and tensors only, so an untrusted file cannot run
code.

Tree encoding
-------------
:func:`encode_tree` keeps what JSON cannot: tuples (``{"$tuple": [...]}``), dicts with non-string
keys such as the integer parameter ids of an optimiser state (``{"$dict": [[key, value], ...]}``),
non-finite floats (``{"$float": "nan"}``) and numpy arrays (``{"$ndarray": key}``).
"""

from __future__ import annotations

import json
import math
import numbers
import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from spectdl.errors import InputError
from spectdl.training.meta import META_KEY

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "decode_tree",
    "encode_tree",
    "parse_sidecar",
    "sidecar_document",
    "temporary_file_pattern",
    "weights_file_name",
    "weights_file_pattern",
]

FORMAT = "spectdl.checkpoint"
FORMAT_VERSION = 1


def encode_tree(obj: Any, path: list[str], tensors: dict[str, torch.Tensor]) -> Any:
    """``obj`` as JSON-compatible values, each tensor or array moved into ``tensors`` (a CPU copy,
    keyed by its path in the tree) and replaced by a reference to it.

    ``path`` is where ``obj`` sits in the whole tree (``[]`` for the root); it names the tensors and
    the offending entry when something cannot be stored without pickle (InputError).
    """
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
            return {k: encode_tree(v, path + [k], tensors) for k, v in obj.items()}
        return {"$dict": [[encode_tree(k, path + ["<key>"], {}), encode_tree(v, path + [str(k)], tensors)]
                          for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"$tuple": [encode_tree(v, path + [str(i)], tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [encode_tree(v, path + [str(i)], tensors) for i, v in enumerate(obj)]
    raise InputError(
        f"checkpoint: {where} is a {type(obj).__name__}; expected tensors, numbers, strings, None, "
        "lists, tuples or dicts (arbitrary objects would need pickle, which spectdl never uses)"
    )


def decode_tree(obj: Any, tensors: Mapping[str, torch.Tensor], where: str = "checkpoint") -> Any:
    """The inverse of :func:`encode_tree`: references resolved against ``tensors``.

    A reference to a tensor that ``tensors`` lacks, or a malformed tag (``$dict`` that is not a list
    of ``[key, value]`` pairs, ``$tuple`` that is not a list, ``$float`` that is not ``"nan"``,
    ``"inf"`` or ``"-inf"``, ``$tensor``/``$ndarray`` that is not a string) raises InputError that
    starts with ``where`` (the checkpoint's file) and names the tag and its place in the tree.
    """
    return _decode(obj, tensors, [], where)


_FLOATS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _malformed(where: str, path: list[str], tag: str, expected: str, value: Any) -> InputError:
    at = "/".join(path) or "<root>"
    return InputError(f"{where}: tag {tag!r} at {at}: expected {expected}, found {type(value).__name__} {value!r:.60}")


def _decode(obj: Any, tensors: Mapping[str, torch.Tensor], path: list[str], where: str) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors, path + [str(i)], where) for i, v in enumerate(obj)]
    if not isinstance(obj, dict):
        return obj
    if len(obj) == 1:
        (tag, value), = obj.items()
        if tag in ("$tensor", "$ndarray"):
            if not isinstance(value, str):
                raise _malformed(where, path, tag, "the name of a tensor (a string)", value)
            if value not in tensors:
                raise InputError(f"{where}: tensor {value!r} is named in the sidecar but missing from the weights file")
            return tensors[value] if tag == "$tensor" else tensors[value].numpy()
        if tag == "$float":
            if not isinstance(value, str) or value not in _FLOATS:
                raise _malformed(where, path, tag, "'nan', 'inf' or '-inf'", value)
            return _FLOATS[value]
        if tag == "$tuple":
            if not isinstance(value, list):
                raise _malformed(where, path, tag, "a list", value)
            return tuple(_decode(v, tensors, path + [str(i)], where) for i, v in enumerate(value))
        if tag == "$dict":
            if not isinstance(value, list) or not all(isinstance(kv, list) and len(kv) == 2 for kv in value):
                raise _malformed(where, path, tag, "a list of [key, value] pairs", value)
            out = {}
            for k, v in value:
                key = _decode(k, tensors, path + ["<key>"], where)
                try:
                    hash(key)
                except TypeError:
                    raise _malformed(where, path, tag, "keys that are numbers, strings, None or tuples", k) from None
                out[key] = _decode(v, tensors, path + [str(key)], where)
            return out
    return {k: _decode(v, tensors, path + [str(k)], where) for k, v in obj.items()}


def weights_file_name(stem: str, digest: str) -> str:
    """The name of the tensor file of checkpoint ``stem`` whose SHA-256 is ``digest``."""
    return f"{stem}.{digest[:16]}.safetensors"


def weights_file_pattern(stem: str) -> re.Pattern:
    """Matches the names of every tensor file that checkpoint ``stem`` may have written."""
    return re.compile(rf"^{re.escape(stem)}\.[0-9a-f]{{16}}\.safetensors$")


def temporary_file_pattern(stem: str) -> re.Pattern:
    """Matches the temporary files that writing checkpoint ``stem`` leaves when killed: the names
    :class:`spectdl.io.atomic.AtomicFile` gives (``.<target name>.<random>.tmp``) for the sidecar
    ``<stem>.json`` and for a tensor file ``<stem>.<digest>.safetensors``."""
    return re.compile(rf"^\.{re.escape(stem)}\.(json|[0-9a-f]{{16}}\.safetensors)\.[a-z0-9_]+\.tmp$")


def sidecar_document(weights_name: str, digest: str, meta: Any, tree: Any) -> dict[str, Any]:
    """The sidecar's JSON document: the format header, the tensor file and its SHA-256, the encoded
    metadata (under ``"spectdl"``) and the encoded tree."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "weights_file": weights_name,
        "weights_sha256": digest,
        META_KEY: meta,
        "tree": tree,
    }


def parse_sidecar(text: str, sidecar: Path) -> dict[str, Any]:
    """The sidecar document in ``text``, checked to be JSON of this format and version; anything else
    raises InputError naming ``sidecar`` (and the line and column of a JSON error)."""
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
    for key, kind, name in ((META_KEY, dict, "a JSON object"), ("tree", dict, "a JSON object")):
        if key in document and not isinstance(document[key], kind):
            found = document[key]
            raise InputError(f"checkpoint {sidecar}: field {key!r} is {type(found).__name__} {found!r:.60}; expected {name}")
    return document
