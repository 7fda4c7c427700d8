"""The checkpoint format without files: tree encoding, the sidecar document and the tensor file names."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from spectdl.errors import InputError
from spectdl.training.checkpoint_format import (
    FORMAT,
    FORMAT_VERSION,
    decode_tree,
    encode_tree,
    parse_sidecar,
    sidecar_document,
    weights_file_name,
    weights_file_pattern,
)


def test_encoded_tree_is_strict_json_and_decodes_to_the_same_values():
    weights = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    tree = {
        "state_dict": {"net.w": weights, "net.w_view": weights[:, 1]},
        "opt": {"state": {0: {"step": torch.tensor(3.0)}}, "groups": ({"lr": 1e-3},)},
        "values": [math.nan, -math.inf, 2, True, None, "x"],
        "array": np.ones((2, 2), dtype=np.int8),
    }
    tensors: dict[str, torch.Tensor] = {}
    encoded = encode_tree(tree, [], tensors)
    text = json.dumps(encoded, allow_nan=False)  # raises on anything JSON cannot hold
    assert set(tensors) == {"state_dict/net.w", "state_dict/net.w_view", "opt/state/0/step", "array"}
    assert tensors["state_dict/net.w_view"].is_contiguous()
    back = decode_tree(json.loads(text), tensors)
    assert torch.equal(back["state_dict"]["net.w"], weights)
    assert back["opt"]["state"][0]["step"].item() == 3.0 and back["opt"]["groups"] == ({"lr": 1e-3},)
    assert math.isnan(back["values"][0]) and back["values"][1:] == [-math.inf, 2, True, None, "x"]
    assert isinstance(back["array"], np.ndarray) and back["array"].dtype == np.int8


def test_a_reference_to_a_missing_tensor_is_an_error():
    with pytest.raises(InputError, match="missing from the weights file"):
        decode_tree({"w": {"$tensor": "w"}}, {})


def test_sidecar_document_parses_back_and_wrong_headers_are_refused():
    digest = hashlib.sha256(b"").hexdigest()
    doc = sidecar_document(weights_file_name("last", digest), digest, {"task": "supervised"}, {"epoch": 1})
    assert doc["format"] == FORMAT and doc["format_version"] == FORMAT_VERSION
    assert doc["spectdl"] == {"task": "supervised"} and doc["weights_file"] == f"last.{digest[:16]}.safetensors"
    where = Path("ck.json")
    assert parse_sidecar(json.dumps(doc), where) == doc
    with pytest.raises(InputError, match="format_version 2; expected 1"):
        parse_sidecar(json.dumps({**doc, "format_version": 2}), where)
    with pytest.raises(InputError, match="format 'list'"):
        parse_sidecar("[]", where)


def test_weights_file_pattern_matches_only_the_files_of_its_checkpoint():
    name = weights_file_name("best", "0123456789abcdef" * 4)
    pattern = weights_file_pattern("best")
    assert pattern.match(name)
    assert not pattern.match(name.replace("best", "best2"))
    assert not weights_file_pattern("b.st").match(name)  # the stem is matched literally
