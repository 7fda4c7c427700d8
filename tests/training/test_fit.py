from __future__ import annotations

import json
import signal
import warnings
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from spectdl.errors import ConfigError, InputError
from spectdl.training import TrainingDivergedError, fit, load_checkpoint, load_model_from_checkpoint
from spectdl.training.checkpoint import remove_checkpoint

from .conftest import BlurDataset, tiny_config


# Dropout (pix2pix generator) and shuffling make an exact resume depend on restored RNG and order.
DROPOUT = {"name": "pix2pix_generator", "kwargs": {"features": [4, 8], "final_activation": None, "dropout": 0.5}}


def resume_config(epochs: int) -> dict:
    return tiny_config(model=DROPOUT, optim={"scheduler": "step", "step_size": 1, "gamma": 0.5},
                       trainer={"max_epochs": epochs})


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    with warnings.catch_warnings():  # module-scoped: the autouse quieting fixture is not active yet
        warnings.simplefilter("ignore")
        result = fit(resume_config(3), BlurDataset(), BlurDataset(seed=1), out)
    return result, load_checkpoint(result.last_checkpoint)


def assert_same_training(tree, reference):
    assert tree["spectdl"]["epochs_completed"] == 3
    for key, value in reference["state_dict"].items():
        assert torch.equal(tree["state_dict"][key], value), key
    assert tree["optimizer_states"][0]["param_groups"][0]["lr"] == 1e-2 * 0.5**3
    assert tree["lr_schedulers"] == reference["lr_schedulers"]


def test_resume_continues_from_the_saved_epoch_exactly(tmp_path, straight_run):
    reference_result, reference = straight_run
    first = fit(resume_config(2), BlurDataset(), BlurDataset(seed=1), tmp_path)
    assert first.epochs_completed == 2
    with pytest.raises(InputError, match="already holds a run"):
        fit(resume_config(3), BlurDataset(), BlurDataset(seed=1), tmp_path)
    second = fit(resume_config(3), BlurDataset(), BlurDataset(seed=1), tmp_path, resume=True)
    assert second.epochs_completed == 3
    assert [row["epoch"] for row in second.history] == [0, 1, 2]  # the history survives the restart
    assert second.history == reference_result.history
    assert_same_training(load_checkpoint(second.last_checkpoint), reference)


class InterruptMidEpoch(Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.current_epoch == 1 and batch_idx == 0:
            raise KeyboardInterrupt


def test_ctrl_c_keeps_a_valid_last_checkpoint_and_resume_recovers(tmp_path, straight_run):
    _, reference = straight_run
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        fit(resume_config(3), BlurDataset(), BlurDataset(seed=1), tmp_path, callbacks=[InterruptMidEpoch()])
    assert signal.getsignal(signal.SIGINT) is handler  # Lightning's SIG_IGN is undone
    tree = load_checkpoint(tmp_path / "checkpoints" / "last.json")
    assert tree["spectdl"]["epochs_completed"] == 1
    model, _ = load_model_from_checkpoint(tmp_path / "checkpoints" / "last.json")
    assert all(torch.isfinite(p).all() for p in model.parameters())
    result = fit(resume_config(3), BlurDataset(), BlurDataset(seed=1), tmp_path, resume=True)
    assert_same_training(load_checkpoint(result.last_checkpoint), reference)


class PoisonAfter(BlurDataset):
    """Serves NaN inputs once ``limit`` samples have been read (here: from the second epoch on)."""

    def __init__(self, limit: int):
        super().__init__()
        self.limit, self.reads = limit, 0

    def __getitem__(self, i):
        self.reads += 1
        item = super().__getitem__(i)
        if self.reads > self.limit:
            item = {**item, "input": torch.full_like(item["input"], float("nan"))}
        return item


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tmp_path):
    cfg = tiny_config(trainer={"max_epochs": 3})
    with pytest.raises(TrainingDivergedError) as info:
        fit(cfg, PoisonAfter(limit=4), BlurDataset(seed=1), tmp_path)
    err = info.value
    message = str(err)
    assert "loss is nan at epoch 1" in message
    assert "batch input itself holds NaN" in message
    assert str(tmp_path / "checkpoints" / "last.json") in message and "after epoch 0" in message
    assert err.epoch == 1 and err.last_checkpoint == tmp_path / "checkpoints" / "last.json"
    model, meta = load_model_from_checkpoint(err.last_checkpoint)
    assert meta["epochs_completed"] == 1
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_fit_time_config_errors_name_the_key(tmp_path):
    cfg = tiny_config(loss={"terms": {"l1": 1.0}, "deep_supervision": 7})
    val = BlurDataset(seed=1)
    with pytest.raises(ConfigError, match="loss.deep_supervision: model 'unet' has no side outputs"):
        fit(cfg, BlurDataset(), val, tmp_path)
    with pytest.raises(ConfigError, match=r"model.kwargs: .*unexpected keyword argument 'featurez'"):
        fit(tiny_config(model={"name": "unet", "kwargs": {"featurez": [4]}}), BlurDataset(), val, tmp_path)
    with pytest.raises(ConfigError, match="loss.terms.l7.type: unknown loss 'l7'"):
        fit(tiny_config(loss={"terms": {"l7": 1.0}}), BlurDataset(), val, tmp_path)


def test_resume_refuses_a_different_network(tmp_path):
    no_val = {"monitor": "train_loss"}
    fit(tiny_config(trainer={"max_epochs": 1}, checkpoint=no_val), BlurDataset(), None, tmp_path)
    other = tiny_config(model={"name": "unet", "kwargs": {"features": [4, 16]}}, trainer={"max_epochs": 2},
                        checkpoint=no_val)
    with pytest.raises(ConfigError, match=r"model: the config gives .*16.* but the checkpoint"):
        fit(other, BlurDataset(), None, tmp_path, resume=True)


class _EpochAwareBlur(BlurDataset):
    def __init__(self):
        super().__init__()
        self.epochs = []

    def set_epoch(self, epoch: int) -> None:
        self.epochs.append(epoch)


def test_fit_tells_the_dataset_each_epoch(tmp_path):
    data = _EpochAwareBlur()
    fit(tiny_config(trainer={"max_epochs": 3}), data, None, tmp_path / "run")
    assert data.epochs == [0, 1, 2]


class Killed(Exception):
    """Stands for SIGKILL between the two checkpoint writes of one epoch."""


def kill_at_second_write_of_epoch(monkeypatch, epoch: int) -> list:
    from spectdl.training import callbacks

    real, written = callbacks.write_checkpoint, []

    def write(path, tree):
        if tree.get("epoch") == epoch and any(e == epoch for e, _ in written):
            raise Killed(f"killed before writing {path}")
        written.append((tree.get("epoch"), Path(path).name))
        return real(path, tree)

    monkeypatch.setattr(callbacks, "write_checkpoint", write)
    return written


def assert_best_agrees(result):
    best = load_checkpoint(result.best_checkpoint)
    assert best["spectdl"]["epoch"] == result.best_epoch
    assert best["spectdl"]["metrics"]["val_loss"] == result.best_score
    assert (best["spectdl"]["best_epoch"], best["spectdl"]["best_score"]) == (result.best_epoch, result.best_score)
    last = load_checkpoint(result.last_checkpoint)
    assert (last["spectdl"]["best_epoch"], last["spectdl"]["best_score"]) == (result.best_epoch, result.best_score)
    return best, last


def test_a_kill_between_the_two_writes_of_an_epoch_leaves_best_in_agreement(tmp_path, monkeypatch):
    cfg = tiny_config(trainer={"max_epochs": 2})
    written = kill_at_second_write_of_epoch(monkeypatch, epoch=1)
    with pytest.raises(Killed):
        fit(cfg, BlurDataset(), BlurDataset(seed=1), tmp_path)
    # best is committed before last: the kill leaves last at epoch 0, never a stale best
    assert written == [(0, "best.json"), (0, "last.json"), (1, "best.json")]
    monkeypatch.undo()
    result = fit(cfg, BlurDataset(), BlurDataset(seed=1), tmp_path, resume=True)
    assert result.best_epoch == 1 and result.epochs_completed == 2
    assert_best_agrees(result)


def test_resume_repairs_a_stale_best_from_last_or_fails_loudly(tmp_path):
    cfg = tiny_config(trainer={"max_epochs": 1})
    val = BlurDataset(seed=1)
    fit(cfg, BlurDataset(), val, tmp_path)
    folder = tmp_path / "checkpoints"
    old_best = {f.name: f.read_bytes() for f in folder.iterdir() if f.name.startswith("best.")}
    result = fit(tiny_config(trainer={"max_epochs": 2}), BlurDataset(), val, tmp_path, resume=True)
    assert result.best_epoch == 1
    # What a kill after last.json but before best.json left (the order of earlier versions).
    remove_checkpoint(folder / "best.json")
    for name, data in old_best.items():
        (folder / name).write_bytes(data)
    assert load_checkpoint(folder / "best.json")["spectdl"]["epoch"] == 0
    with pytest.warns(UserWarning, match="rewrote best.json from last.json"):
        again = fit(tiny_config(trainer={"max_epochs": 2}), BlurDataset(), val, tmp_path, resume=True)
    best, last = assert_best_agrees(again)
    assert again.best_epoch == 1 and best["spectdl"]["epoch"] == 1
    for key, value in last["state_dict"].items():
        assert torch.equal(best["state_dict"][key], value), key

    # A best epoch older than last whose best.json is gone cannot be rebuilt: an error, not a silent run.
    lower = tmp_path / "max"
    fit(tiny_config(trainer={"max_epochs": 2}, checkpoint={"mode": "max"}), BlurDataset(), val, lower)
    assert load_checkpoint(lower / "checkpoints" / "last.json")["spectdl"]["best_epoch"] == 0
    remove_checkpoint(lower / "checkpoints" / "best.json")
    with pytest.raises(InputError, match=r"best\.json: holds epoch \(file missing\), but .*last\.json records the best at epoch 0"):
        fit(tiny_config(trainer={"max_epochs": 3}, checkpoint={"mode": "max"}), BlurDataset(), val, lower, resume=True)


def test_fit_removes_temporaries_that_killed_writes_left(tmp_path):
    from spectdl.io.atomic import AtomicFile

    cfg = tiny_config(trainer={"max_epochs": 1})
    fit(cfg, BlurDataset(), BlurDataset(seed=1), tmp_path)
    folder = tmp_path / "checkpoints"
    weights = json.loads((folder / "last.json").read_text())["weights_file"]
    left = [AtomicFile(folder / "last.json", overwrite=True).tmp,  # 0-byte sidecar temporary
            AtomicFile(folder / weights, overwrite=True).tmp]      # a large tensor-file temporary
    left[1].write_bytes(b"\0" * 1_000_000)
    other = folder / ".tmpabc123"  # not the writer's pattern: left alone
    other.write_bytes(b"x")
    result = fit(tiny_config(trainer={"max_epochs": 2}), BlurDataset(), BlurDataset(seed=1), tmp_path, resume=True)
    assert result.epochs_completed == 2
    assert not any(f.exists() for f in left) and other.exists()
    assert not [f.name for f in folder.iterdir() if f.name.endswith(".tmp")]
