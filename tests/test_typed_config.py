"""The typed-config engine on schemas of its own: conversion rules, strict YAML, loading, overrides."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Union

import pytest

from spectdl.errors import ConfigError, InputError
from spectdl.typed_config import Section, apply_overrides, convert, load_section, read_yaml


@dataclass(frozen=True)
class Inner(Section):
    size: int = 3
    rate: float = 0.5

    def _check(self) -> None:
        if self.size < 1:
            raise ConfigError(f"size: expected a positive integer, found {self.size}")


@dataclass(frozen=True)
class Outer(Section):
    name: str = "x"
    mode: Literal["a", "b"] = "a"
    flag: bool = False
    lr: float = 1e-3
    pair: tuple[float, float] = (0.0, 1.0)
    sizes: tuple[int, ...] = ()
    inner: Inner = field(default_factory=Inner)
    maybe: Optional[Inner] = None
    weights: dict[str, float] = field(default_factory=dict)
    blocks: dict[str, Inner] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    anything: Any = None
    limit: Optional[Union[int, float]] = None


def write(tmp_path, text: str, name: str = "c.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------------------------
# convert and Section


def test_int_is_accepted_for_float_and_converted():
    assert convert(2, float, "x") == 2.0 and isinstance(convert(2, float, "x"), float)
    assert Outer(lr=1).lr == 1.0 and isinstance(Outer(lr=1).lr, float)


@pytest.mark.parametrize("value, hint", [(True, int), (False, float), (1, bool), (2.5, int), ("1", float)])
def test_bool_is_not_a_number_and_numbers_are_not_bools(value, hint):
    with pytest.raises(ConfigError, match="^x: expected "):
        convert(value, hint, "x")


def test_literal_compares_type_as_well_as_value():
    assert convert("a", Literal["a", "b"], "m") == "a"
    with pytest.raises(ConfigError, match="m: expected one of 'a', 'b', found 'c'"):
        convert("c", Literal["a", "b"], "m")
    with pytest.raises(ConfigError):
        convert(True, Literal[1, 2], "m")  # True == 1, but a boolean is not the integer 1


def test_optional_and_union():
    assert convert(None, Optional[int], "o") is None
    assert convert(3, Optional[int], "o") == 3
    with pytest.raises(ConfigError, match="^o: expected an integer, found 'x'$"):  # the one option's words
        convert("x", Optional[int], "o")
    assert type(convert(2, Union[int, float], "u")) is int  # options are tried in order
    with pytest.raises(ConfigError, match="^u: expected an integer or a float, found None$"):
        convert(None, Union[int, float], "u")


def test_tuples_from_lists():
    assert convert([1, 2], tuple[float, float], "p") == (1.0, 2.0)
    assert convert([1, 2, 3], tuple[int, ...], "s") == (1, 2, 3)
    with pytest.raises(ConfigError, match=r"p: expected a list of 2 values \(a float, a float\), found 1 values"):
        convert([1], tuple[float, float], "p")
    with pytest.raises(ConfigError, match=r"s\[1\]: expected an integer, found 'b'"):
        convert([1, "b"], tuple[int, ...], "s")
    with pytest.raises(ConfigError, match="s: expected a list of integers, found 'abc'"):
        convert("abc", tuple[int, ...], "s")  # a string is not a list of its characters


def test_dicts_check_keys_and_values():
    assert convert({"a": 1}, dict[str, float], "w") == {"a": 1.0}
    with pytest.raises(ConfigError, match="w.a: expected a float, found 'x'"):
        convert({"a": "x"}, dict[str, float], "w")
    with pytest.raises(ConfigError, match="w: keys must be strings, found 1"):
        convert({1: 2.0}, dict[str, float], "w")
    with pytest.raises(ConfigError, match="w: expected a mapping, found"):
        convert([1], dict[str, float], "w")


def test_nested_sections_and_dotted_paths():
    cfg = Outer.from_dict({"inner": {"size": 5}, "maybe": {"rate": 1}, "blocks": {"b1": {"size": 2}}})
    assert cfg.inner == Inner(size=5) and cfg.maybe == Inner(rate=1.0) and cfg.blocks["b1"].size == 2
    with pytest.raises(ConfigError, match="^inner.rate: expected a float, found 'fast'$"):
        Outer.from_dict({"inner": {"rate": "fast"}})
    with pytest.raises(ConfigError, match=r"^maybe.size: expected a positive integer, found 0$"):
        Outer.from_dict({"maybe": {"size": 0}})  # a _check message gets the section's path
    with pytest.raises(ConfigError, match=r"^blocks.b1.sise: unknown key; expected one of \['size', 'rate'\]$"):
        Outer.from_dict({"blocks": {"b1": {"sise": 2}}})
    with pytest.raises(ConfigError, match=r"inner: expected a mapping \(section Inner\), found 3"):
        Outer.from_dict({"inner": 3})


def test_unknown_top_level_key_lists_the_known_ones():
    with pytest.raises(ConfigError) as info:
        Outer.from_dict({"nmae": "y"})
    assert str(info.value).startswith("nmae: unknown key; expected one of ['name', 'mode', ")


def test_direct_construction_is_checked_and_to_dict_is_plain():
    with pytest.raises(ConfigError, match="^flag: expected a boolean, found 'yes'$"):
        Outer(flag="yes")
    cfg = Outer(pair=[1, 2], inner={"size": 4})
    assert cfg.pair == (1.0, 2.0) and cfg.inner == Inner(size=4)
    plain = cfg.to_dict()
    assert plain["pair"] == [1.0, 2.0] and plain["inner"] == {"size": 4, "rate": 0.5}
    assert Outer.from_dict(plain) == cfg
    assert cfg.replace(lr=2).lr == 2.0


# ------------------------------------------------------------------------------------------------
# read_yaml


def test_read_yaml_reads_yaml_12_floats(tmp_path):
    data = read_yaml(write(tmp_path, "a: 1e-3\nb: 5E5\nc: +2.5e+2\nd: 1.0\ne: 7\nf: 1_000\n"))
    assert data == {"a": 1e-3, "b": 5e5, "c": 250.0, "d": 1.0, "e": 7, "f": 1000}
    assert all(isinstance(data[k], float) for k in "abcd")
    assert read_yaml(write(tmp_path, "")) is None


def test_read_yaml_rejects_a_duplicate_key_naming_both_lines(tmp_path):
    path = write(tmp_path, "a: 1\nb:\n  x: 1\n  x: 2\n")
    with pytest.raises(ConfigError) as info:
        read_yaml(path)
    assert str(info.value).startswith(f"{path}:4:")
    assert "key 'x' given twice (first on line 3)" in str(info.value)


def test_read_yaml_invalid_yaml_names_file_and_line(tmp_path):
    path = write(tmp_path, "a: 1\nb: [1, 2\nc: 3\n")
    with pytest.raises(ConfigError) as info:
        read_yaml(path)
    text = str(info.value)
    assert text.startswith(f"{path}:") and "invalid YAML" in text
    line = int(text[len(str(path)) + 1:].split(":")[0])
    assert line >= 2


def test_read_yaml_missing_file_and_error_class(tmp_path):
    with pytest.raises(ConfigError, match="absent.yaml: cannot read the file"):
        read_yaml(tmp_path / "absent.yaml")
    with pytest.raises(InputError, match="absent.yaml: cannot read the file"):
        read_yaml(tmp_path / "absent.yaml", error=InputError)
    (tmp_path / "latin1.yaml").write_bytes(b"a: \xe9\n")
    with pytest.raises(ConfigError, match="latin1.yaml: not a UTF-8 text file"):
        read_yaml(tmp_path / "latin1.yaml")


# ------------------------------------------------------------------------------------------------
# load_section


def test_load_section_from_instance_mapping_and_file(tmp_path):
    cfg = Outer(name="y")
    assert load_section(Outer, cfg) is cfg
    assert load_section(Outer, {"name": "y"}) == cfg
    assert load_section(Outer, write(tmp_path, "name: y\n")) == cfg
    assert load_section(Outer, str(write(tmp_path, "name: y\nlr: 2e-4\n"))).lr == 2e-4


def test_load_section_empty_file_is_an_error_not_the_defaults(tmp_path):
    for text in ("", "# only a comment\n"):
        path = write(tmp_path, text)
        with pytest.raises(ConfigError) as info:
            load_section(Outer, path)
        assert str(info.value) == f"{path}: the file is empty; expected a mapping of keys"


def test_load_section_messages_start_with_the_file(tmp_path):
    path = write(tmp_path, "inner: {rate: fast}\n")
    with pytest.raises(ConfigError) as info:
        load_section(Outer, path)
    assert str(info.value) == f"{path}: inner.rate: expected a float, found 'fast'"
    listing = write(tmp_path, "- 1\n")
    with pytest.raises(ConfigError, match="c.yaml: expected a mapping of keys at the top level, found list"):
        load_section(Outer, listing)
    with pytest.raises(ConfigError, match="^settings: expected a YAML path, a mapping or a Outer, found int$"):
        load_section(Outer, 3, what="settings")
    with pytest.raises(ConfigError, match="^inner.rate: "):
        load_section(Outer, {"inner": {"rate": "fast"}})  # a mapping has no file to name


# ------------------------------------------------------------------------------------------------
# apply_overrides


def test_overrides_set_nested_keys_parsed_as_yaml():
    data = {"name": "x", "inner": {"size": 3}}
    out = apply_overrides(Outer, data, ["inner.rate=2e-4", "sizes=[1, 2]", "limit=null", "name=abc", "flag=true"])
    assert out == {"name": "abc", "inner": {"size": 3, "rate": 2e-4}, "sizes": [1, 2], "limit": None, "flag": True}
    assert isinstance(out["inner"]["rate"], float)
    cfg = Outer.from_dict(out)
    assert cfg.inner.rate == 2e-4 and cfg.sizes == (1, 2) and cfg.name == "abc"


def test_overrides_do_not_mutate_the_input():
    data = {"inner": {"size": 3}, "weights": {"a": 1.0}}
    out = apply_overrides(Outer, data, ["inner.size=4", "weights.b=2"])
    assert data == {"inner": {"size": 3}, "weights": {"a": 1.0}}
    assert out["inner"] is not data["inner"] and out == {"inner": {"size": 4}, "weights": {"a": 1.0, "b": 2}}


def test_overrides_create_missing_or_null_sections_and_later_ones_win():
    out = apply_overrides(Outer, {"maybe": None}, ["maybe.size=2", "lr=1", "lr=0.5"])
    assert out == {"maybe": {"size": 2}, "lr": 0.5}
    assert Outer.from_dict(out).maybe == Inner(size=2)


def test_overrides_allow_any_key_inside_dict_and_any_fields():
    overrides = ["weights.anything=0.3", "extra.deep.er=1", "anything.x.y=[a]", "blocks.b.size=2"]
    out = apply_overrides(Outer, {}, overrides)
    assert out == {
        "weights": {"anything": 0.3},
        "extra": {"deep": {"er": 1}},
        "anything": {"x": {"y": ["a"]}},
        "blocks": {"b": {"size": 2}},
    }
    with pytest.raises(ConfigError, match=r"unknown key 'sise' in blocks.b; expected one of \['size', 'rate'\]"):
        apply_overrides(Outer, {}, ["blocks.b.sise=2"])  # entries of dict[str, Section] are sections


def test_overrides_unknown_key_names_the_override_and_the_section():
    with pytest.raises(ConfigError) as info:
        apply_overrides(Outer, {}, ["inner.sise=1"])
    assert str(info.value) == "--set inner.sise=1: unknown key 'sise' in inner; expected one of ['size', 'rate']"
    with pytest.raises(ConfigError, match=r"^--set nmae=y: unknown key 'nmae' at the top level; expected one of \["):
        apply_overrides(Outer, {}, ["nmae=y"])
    with pytest.raises(ConfigError, match=r"^--set maybe.sise=1: unknown key 'sise' in maybe"):
        apply_overrides(Outer, {}, ["maybe.sise=1"])  # Optional[Section] is walked too
    with pytest.raises(ConfigError, match=r"^--set lr.x=1: lr is a single value, not a section"):
        apply_overrides(Outer, {}, ["lr.x=1"])


@pytest.mark.parametrize("override", ["lr", "inner.size", "=3", "inner..size=3", ".lr=1"])
def test_overrides_without_a_dotted_key_and_value_are_errors(override):
    with pytest.raises(ConfigError) as info:
        apply_overrides(Outer, {}, [override])
    assert str(info.value).startswith(f"--set {override}: expected the form dotted.key=value")


def test_override_values_must_be_valid_yaml_and_types_are_checked_later():
    with pytest.raises(ConfigError, match=r"^--set sizes=\[1: invalid YAML"):
        apply_overrides(Outer, {}, ["sizes=[1"])
    out = apply_overrides(Outer, {}, ["inner.rate=fast"])  # a well-formed key; the value is checked later
    with pytest.raises(ConfigError, match="^inner.rate: expected a float, found 'fast'$"):
        Outer.from_dict(out)
    assert apply_overrides(Outer, {}, ["name=a=b"]) == {"name": "a=b"}  # the first '=' splits
