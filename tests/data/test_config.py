import pytest

from spectdl.data import SimulationConfig, load_simulation_config
from spectdl.errors import ConfigError


def test_yaml_file_round_trips_and_reads_exponents_as_floats(tmp_path):
    path = tmp_path / "sim.yaml"
    path.write_text(
        "phantom: brain2d\n"
        "n_samples: 20000\n"
        "grid: {shape: [128, 128], voxel_size_mm: 2.0}\n"
        "counts: {total: 5e5, levels: {full: 1.0, low: 0.142857}}\n"
        "phantom_kwargs: {n_regions: [1, 3]}\n"
        "recon: {iterations: 4, subsets: 10}\n"
    )
    cfg = load_simulation_config(path)
    assert cfg.counts.total == 5.0e5 and isinstance(cfg.counts.total, float)
    assert cfg.grid.shape == (128, 128) and cfg.orbit.n_angles == 120
    assert cfg.phantom_kwargs == {"n_regions": (1, 3)}  # YAML lists become the tuples phantoms take
    assert SimulationConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    "data, key",
    [
        ({"n_sampels": 3}, "n_sampels"),
        ({"orbit": {"n_angels": 60}}, "orbit.n_angels"),
        ({"n_samples": "many"}, "n_samples"),
        ({"n_samples": 2.5}, "n_samples"),
        ({"attenuation": "yes"}, "attenuation"),
        ({"counts": {"total": "lots"}}, "counts.total"),
        ({"counts": {"levels": {"low": 1.5}}}, "counts.levels.low"),
        ({"phantom": "brain3d"}, "phantom"),
        ({"phantom_kwargs": {"n_region": 2}}, "phantom_kwargs.n_region"),
        ({"phantom_kwargs": {"seed": 2}}, "phantom_kwargs.seed"),
        ({"store": ["activity", "sinogram"]}, "store[1]"),
        ({"splits": {"train": 0.5, "test": 0.2}}, "splits"),
        ({"grid": {"shape": [32, 32, 32]}}, "grid.shape"),
        ({"phantom": "wholebody_planar", "recon": {"iterations": 2}}, "recon"),
        ({"recon": {"subsets": 200}}, "recon.subsets"),
    ],
)
def test_bad_keys_and_types_raise_config_error_naming_the_key(data, key):
    with pytest.raises(ConfigError) as err:
        load_simulation_config(data)
    assert str(err.value).startswith(key + ":") or f" {key}:" in str(err.value), str(err.value)


def test_yaml_errors_name_the_file(tmp_path):
    dup = tmp_path / "dup.yaml"
    dup.write_text("seed: 1\nseed: 2\n")
    with pytest.raises(ConfigError, match="dup.yaml.*given twice"):
        load_simulation_config(dup)
    bad = tmp_path / "bad.yaml"
    bad.write_text("orbit: {n_angles: 60\n")
    with pytest.raises(ConfigError, match="bad.yaml:"):
        load_simulation_config(bad)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("orbit:\n  radius: 200\n")
    with pytest.raises(ConfigError, match=r"unknown.yaml: orbit.radius: unknown key; expected one of \["):
        load_simulation_config(unknown)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError, match="empty.yaml: the file is empty; expected a mapping of keys"):
        load_simulation_config(empty)


@pytest.mark.parametrize(
    "data, message",
    [
        (
            {"counts": {"total": "lots"}},
            "counts.total: expected a float or a list of 2 values (a float, a float), found 'lots'",
        ),
        ({"store": "activity"}, "store: expected a list of strings, found 'activity'"),
        ({"grid": {"shape": [64, "x"]}}, "grid.shape[1]: expected an integer, found 'x'"),
        ({"orbit": {"n_angels": 60}}, "orbit.n_angels: unknown key; expected one of ['n_angles', "),
    ],
)
def test_messages_are_those_of_the_typed_config_engine(data, message):
    with pytest.raises(ConfigError) as err:
        load_simulation_config(data)
    assert str(err.value).startswith(message), str(err.value)
