from __future__ import annotations

import hashlib
import json
import math
import os

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from spectdl.errors import InputError
from spectdl.io import atomic
from spectdl.models import build
from spectdl.training.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint, write_checkpoint
from spectdl.training.networks import load_model_from_checkpoint


def trained_unet():
    torch.manual_seed(0)
    model = build("unet", in_channels=1, out_channels=1, features=[4, 8])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(2, 1, 16, 16)
    for _ in range(2):  # moves the BatchNorm statistics and fills Adam's state
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()
    return model, opt


def strict_json(path):
    """Parse as standard JSON: NaN/Infinity literals are rejected."""
    def reject(name):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(path.read_text(), parse_constant=reject)


def test_round_trip_is_exact_and_readable_by_safetensors_alone(tmp_path):
    model, opt = trained_unet()
    path = save_checkpoint(
        tmp_path / "ck", model, model_name="unet", model_kwargs={"features": [4, 8]}, optimizer=opt,
        epoch=4, config={"seed": 1}, modality="spect", metrics={"val_loss": 0.25},
    )
    assert path == tmp_path / "ck.json"
    sidecar = strict_json(path)
    assert sidecar["format"] == "spectdl.checkpoint" and sidecar["format_version"] == 1
    meta = sidecar["spectdl"]
    assert meta["model"] == {"name": "unet", "kwargs": {"features": [4, 8]}}
    assert (meta["in_channels"], meta["out_channels"], meta["modality"]) == (1, 1, "spect")
    assert (meta["epoch"], meta["epochs_completed"], meta["metrics"]) == (4, 5, {"val_loss": 0.25})

    # The weights file alone, read by safetensors (no spectdl code), holds the exact tensors.
    tensors = load_file(tmp_path / sidecar["weights_file"])
    for key, value in model.state_dict().items():
        assert torch.equal(tensors[f"state_dict/net.{key}"], value), key

    tree = load_checkpoint(path)
    for key, value in model.state_dict().items():
        assert torch.equal(tree["state_dict"][f"net.{key}"], value)
    saved_opt = tree["optimizer_states"][0]
    ref = opt.state_dict()
    assert saved_opt["param_groups"] == ref["param_groups"]
    assert set(saved_opt["state"]) == set(ref["state"])  # integer parameter ids survive JSON
    for pid, st in ref["state"].items():
        for name, value in st.items():
            assert torch.equal(saved_opt["state"][pid][name], value)

    # The optimiser state loads back into a fresh optimiser and steps identically.
    model2, _ = load_model_from_checkpoint(path)
    opt2 = torch.optim.Adam(model2.parameters(), lr=1e-3)
    opt2.load_state_dict(saved_opt)
    model2.train()
    x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(3))
    for m, o in ((model, opt), (model2, opt2)):
        o.zero_grad()
        m(x).square().mean().backward()
        o.step()
    for (k, a), b in zip(model.state_dict().items(), model2.state_dict().values()):
        assert torch.equal(a, b), k


def test_tree_encoding_keeps_types(tmp_path):
    tree = {
        "ints": {3: "three", 1: "one"},
        "tuple": (1, 2.5, None),
        "floats": [math.nan, math.inf, -math.inf, 0.5],
        "dollar": {"$tensor": "not a tensor"},
        "array": np.arange(6, dtype=np.int16).reshape(2, 3),
        "scalar": torch.tensor(3.5, dtype=torch.float64),
        "bf16": torch.ones(3, dtype=torch.bfloat16),
        "np_float": np.float32(0.25),
    }
    path = write_checkpoint(tmp_path / "tree", tree)
    strict_json(path)
    back = read_checkpoint(path)
    assert back["ints"] == {3: "three", 1: "one"}
    assert back["tuple"] == (1, 2.5, None)
    assert math.isnan(back["floats"][0]) and back["floats"][1:] == [math.inf, -math.inf, 0.5]
    assert back["dollar"] == {"$tensor": "not a tensor"}
    assert isinstance(back["array"], np.ndarray) and np.array_equal(back["array"], tree["array"])
    assert back["scalar"].dtype == torch.float64 and back["scalar"].item() == 3.5
    assert back["bf16"].dtype == torch.bfloat16
    assert back["np_float"] == 0.25


def test_objects_that_would_need_pickle_are_refused(tmp_path):
    with pytest.raises(InputError, match="opt/fn is a function"):
        write_checkpoint(tmp_path / "bad", {"opt": {"fn": lambda: 0}})
    assert not list(tmp_path.iterdir())


def test_modified_weights_file_is_detected(tmp_path):
    model, _ = trained_unet()
    path = save_checkpoint(tmp_path / "m", model, model_name="unet", model_kwargs={"features": [4, 8]})
    weights = tmp_path / strict_json(path)["weights_file"]
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(InputError, match="modified or truncated"):
        load_checkpoint(path)


def test_bad_paths_and_documents(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        load_checkpoint(tmp_path / "absent.json")
    (tmp_path / "broken.json").write_text('{"format": "spectdl.checkpoint",\n  oops}')
    with pytest.raises(InputError, match=r"broken.json:2:3: not valid JSON"):
        load_checkpoint(tmp_path / "broken.json")
    (tmp_path / "other.json").write_text('{"format": "something"}')
    with pytest.raises(InputError, match="format 'something'"):
        load_checkpoint(tmp_path / "other.json")
    with pytest.raises(InputError, match="name the JSON sidecar"):
        load_checkpoint(tmp_path / "x.safetensors")


def test_an_interrupted_write_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    model, _ = trained_unet()
    path = save_checkpoint(tmp_path / "last", model, model_name="unet", model_kwargs={"features": [4, 8]}, epoch=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)

    real_replace = atomic.os.replace

    def replace_then_die(src, dst):
        if str(dst).endswith(".json"):  # the commit point: die just before it
            raise KeyboardInterrupt
        return real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", replace_then_die)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, model, model_name="unet", model_kwargs={"features": [4, 8]}, epoch=1)
    monkeypatch.undo()

    tree = load_checkpoint(path)
    assert tree["spectdl"]["epoch"] == 0
    for key, value in before.items():
        assert torch.equal(tree["state_dict"][f"net.{key}"], value)
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]

    # The next successful save commits and removes the orphaned tensor file.
    save_checkpoint(path, model, model_name="unet", model_kwargs={"features": [4, 8]}, epoch=1)
    assert len(list(tmp_path.glob("last.*.safetensors"))) == 1
    assert load_checkpoint(path)["spectdl"]["epoch"] == 1


def test_checkpoint_files_get_the_umask_permissions_and_a_true_digest(tmp_path):
    model, _ = trained_unet()
    old = os.umask(0o022)
    try:
        path = save_checkpoint(tmp_path / "shared", model, model_name="unet", model_kwargs={"features": [4, 8]})
    finally:
        os.umask(old)
    sidecar = strict_json(path)
    weights = tmp_path / sidecar["weights_file"]
    # Like every other output (no longer the private 0o600 of earlier versions).
    assert (path.stat().st_mode & 0o777) == 0o644 and (weights.stat().st_mode & 0o777) == 0o644
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert sidecar["weights_sha256"] == digest and weights.name == f"shared.{digest[:16]}.safetensors"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, weights.name])


def test_checkpoint_writes_are_synced_before_the_commit(tmp_path, monkeypatch):
    model, _ = trained_unet()
    events = []
    real_fsync, real_replace = atomic.os.fsync, atomic.os.replace

    def fsync(fd):
        events.append("fsync")
        return real_fsync(fd)

    def replace(src, dst):
        events.append(f"replace {os.path.basename(dst).rsplit('.', 1)[-1]}")
        return real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    monkeypatch.setattr(atomic.os, "replace", replace)
    save_checkpoint(tmp_path / "last", model, model_name="unet", model_kwargs={"features": [4, 8]})
    # file synced, renamed, folder synced: first the tensor file, then the sidecar (the commit)
    assert events == ["fsync", "replace safetensors", "fsync", "fsync", "replace json", "fsync"]


def _set(doc, path, value):
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


@pytest.mark.parametrize("path, value, tag", [
    (("tree", "optimizer_states", 0, "state"), {"$dict": 5}, "$dict"),
    (("tree", "optimizer_states", 0, "state"), {"$dict": [[0]]}, "$dict"),
    (("tree", "optimizer_states", 0, "state"), {"$dict": [[[1], {}]]}, "$dict"),
    (("tree", "epoch"), {"$tuple": 3}, "$tuple"),
    (("tree", "epoch"), {"$tuple": "ab"}, "$tuple"),
    (("tree", "epoch"), {"$float": 1.5}, "$float"),
    (("tree", "epoch"), {"$float": "not a number"}, "$float"),
    (("tree", "epoch"), {"$tensor": ["state_dict/net.x"]}, "$tensor"),
    (("tree", "epoch"), {"$tensor": {"k": 1}}, "$tensor"),
    (("tree", "epoch"), {"$ndarray": 7}, "$ndarray"),
    (("spectdl", "metrics"), {"$float": None}, "$float"),
    (("tree",), [], "'tree'"),
    (("tree",), "x", "'tree'"),
    (("spectdl",), [1, 2], "'spectdl'"),
])
def test_malformed_sidecar_tags_raise_input_error_naming_the_file_and_tag(tmp_path, path, value, tag):
    model, opt = trained_unet()
    sidecar = save_checkpoint(tmp_path / "ck", model, model_name="unet", model_kwargs={"features": [4, 8]},
                              optimizer=opt, epoch=1)
    assert isinstance(load_checkpoint(sidecar)["optimizer_states"][0]["state"], dict)
    doc = json.loads(sidecar.read_text())
    _set(doc, path, value)
    sidecar.write_text(json.dumps(doc))
    with pytest.raises(InputError) as info:
        load_checkpoint(sidecar)
    message = str(info.value)
    assert str(sidecar) in message and tag in message, message


def test_remove_temporary_files_takes_only_the_writers_temporaries(tmp_path):
    from spectdl.training.checkpoint import remove_temporary_files

    model, _ = trained_unet()
    last = save_checkpoint(tmp_path / "last", model, model_name="unet", model_kwargs={"features": [4, 8]})
    weights = tmp_path / strict_json(last)["weights_file"]
    # Temporaries named by the real writer, as a kill leaves them (neither committed nor aborted).
    left = [atomic.AtomicFile(last, overwrite=True).tmp, atomic.AtomicFile(weights, overwrite=True).tmp,
            atomic.AtomicFile(tmp_path / "best.json", overwrite=True).tmp]
    left[1].write_bytes(b"\0" * 100_000)
    keep = [tmp_path / n for n in ("notes.tmp", ".other.json.abcd1234.tmp", "last.json.tmp", ".last.json")]
    for f in keep:
        f.write_text("x")
    assert sorted(remove_temporary_files(tmp_path)) == sorted(left)
    assert not any(f.exists() for f in left)
    assert all(f.exists() for f in keep) and last.exists() and weights.exists()
    load_checkpoint(last)
