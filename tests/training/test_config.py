from __future__ import annotations

import pytest

from spectdl.errors import ConfigError
from spectdl.training.config import (
    OptimConfig,
    TrainConfig,
    dump_config,
    load_config,
    shipped_configs,
)


def write(tmp_path, text: str):
    path = tmp_path / "train.yaml"
    path.write_text(text)
    return path


def test_yaml_is_read_into_typed_sections(tmp_path):
    path = write(
        tmp_path,
        """
task: supervised
seed: 7
model: {name: unet, kwargs: {features: [4, 8]}}
optim:
  lr: 1e-3          # YAML 1.1 would read this as the string '1e-3'
  betas: [0.5, 0.999]
  weight_decay: 0   # an int where a float is expected is fine
trainer: {devices: [0, 1], precision: bf16-mixed, max_epochs: 3}
""",
    )
    cfg = load_config(path)
    assert cfg.seed == 7
    assert cfg.optim.lr == 1e-3 and isinstance(cfg.optim.lr, float)
    assert cfg.optim.betas == (0.5, 0.999)
    assert cfg.optim.weight_decay == 0.0 and isinstance(cfg.optim.weight_decay, float)
    assert cfg.trainer.devices == (0, 1)
    assert cfg.trainer.precision == "bf16-mixed"
    assert cfg.model.kwargs == {"features": [4, 8]}
    # Defaults of the sections not given.
    assert cfg.data.batch_size == 4 and cfg.checkpoint.monitor == "val_loss"


@pytest.mark.parametrize(
    "text, message",
    [
        ("model: {name: unet}\noptim: {lr: fast}\n", "optim.lr: expected a float, found 'fast'"),
        ("model: {name: unet}\noptim: {lrr: 0.1}\n", "optim.lrr: unknown key"),
        ("model: {name: unet}\nbogus: 1\n", "bogus: unknown key"),
        ("model: {name: unet}\ntrainer: {max_epochs: 2.5}\n", "trainer.max_epochs: expected an integer, found 2.5"),
        ("model: {name: unet}\ntrainer: {enable_progress_bar: 'yes'}\n", "trainer.enable_progress_bar: expected a boolean"),
        ("model: {name: unet}\ndata: {batch_size: true}\n", "data.batch_size: expected an integer, found True"),
        ("model: {name: unet}\noptim: {betas: [0.9]}\n", "optim.betas: expected a list of 2 values"),
        ("model: {name: unet}\noptim: {lr: -1.0}\n", "optim.lr: expected a positive number, found -1.0"),
        ("model: {name: unet}\noptim: {name: rmsprop}\n", "optim.name: expected one of 'adam', 'adamw', 'sgd'"),
        ("model: {name: unet}\ntrainer: {precision: 8}\n", "trainer.precision: expected a string, found 8"),
        ("model: {name: unet}\ntrainer: {strategy: fsdp}\n", "trainer.strategy: expected 'auto'"),
        ("model: {name: nonet}\n", "model.name: unknown model 'nonet'"),
        ("model: {name: unet}\ncheckpoint: {metadata: {modality: x}}\n", "checkpoint.metadata.modality: written by spectdl"),
        ("model: {name: unet}\ntrainer: {devices: gpu}\n", "trainer.devices: expected an integer, a list"),
        ("task: gan\nmodel: {name: unet}\ngan: {optim_d: {lr: x}}\n", "gan.optim_d.lr: expected a float, found 'x'"),
        ("task: gan\nmodel: {name: unet}\ngan: {discriminator: {nam: x}}\n", "gan.discriminator.nam: unknown key"),
        ("task: supervised\n", "model: required for task 'supervised'"),
        ("task: two_stage\ntwo_stage: {stage: 4}\n", "two_stage.stage: expected 1, 2 or 3, found 4"),
        ("task: two_stage\nmodel: {name: unet}\n", "model: not used by task 'two_stage'"),
        ("model: {name: unet}\ntwo_stage: {stage: 1}\n", "two_stage: only used by task 'two_stage'"),
    ],
)
def test_config_errors_name_the_dotted_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_corrupt_yaml_names_file_and_line(tmp_path):
    path = write(tmp_path, "model:\n  name: unet\noptim:\n  lr: [0.1\n  betas: 2\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    assert text.startswith(f"{path}:5:")  # the unclosed list is reported where the parser fails
    assert "invalid YAML" in text


def test_duplicate_keys_are_an_error_with_both_lines(tmp_path):
    path = write(tmp_path, "model: {name: unet}\noptim:\n  lr: 0.1\n  lr: 0.2\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert f"{path}:4:" in str(info.value) and "'lr' given twice (first on line 3)" in str(info.value)


def test_missing_file_empty_file_and_non_mapping_document(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match="expected a mapping of keys at the top level, found list"):
        load_config(write(tmp_path, "- 1\n- 2\n"))
    # An empty file is a mistake to report, not a request for every default.
    with pytest.raises(ConfigError, match="train.yaml: the file is empty; expected a mapping of keys"):
        load_config(write(tmp_path, "# nothing yet\n"))


def test_direct_construction_is_checked_too():
    with pytest.raises(ConfigError, match="lr: expected a float, found 'fast'"):
        OptimConfig(lr="fast")
    cfg = TrainConfig.from_dict({"task": "gan", "model": {"name": "pix2pix_generator"}})
    assert cfg.gan is not None and cfg.gan.optim_d.lr == 2e-4  # the gan section gets its defaults


def test_dump_and_load_round_trip(tmp_path):
    cfg = load_config({"model": {"name": "unet", "kwargs": {"features": [4, 8]}}, "optim": {"betas": [0.5, 0.9]}})
    path = tmp_path / "again.yaml"
    dump_config(cfg, path)
    assert load_config(path) == cfg


def test_shipped_configs_are_valid():
    configs = shipped_configs()
    assert {"bone_spect_demo", "myocardial_perfusion_gan", "spectnet_two_stage"} <= set(configs)
    for name, path in configs.items():
        cfg = load_config(path)
        assert isinstance(cfg, TrainConfig), name
