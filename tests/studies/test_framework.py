"""The study framework: scales and overrides, the config hash, stages and done.json, the results
contract's claims and paper values, and the bad inputs of `spectdl study run`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pytest

from spectdl.errors import InputError

from spectdl.errors import ConfigError, InputError
from spectdl.studies import available_studies, get_study
from spectdl.studies.config import StudyConfig, config_differences, config_hash, resolve_config, study_config_file
from spectdl.studies.results import Claim, PaperValue, evaluate_claim, our_value, write_results
from spectdl.studies.runner import Run, run_study
from spectdl.typed_config import Section


@dataclass(frozen=True)
class _Inner(Section):
    lr: float = 1e-3
    epochs: int = 1


@dataclass(frozen=True)
class _Cfg(StudyConfig):
    inner: _Inner = field(default_factory=_Inner)
    free: dict[str, Any] = field(default_factory=dict)


def _study_file(tmp_path):
    p = tmp_path / "toy.yaml"
    p.write_text("defaults: {inner: {lr: 0.01}}\nscales:\n  smoke: {inner: {epochs: 2}}\n  quick: {inner: {epochs: 5}}\n")
    return p


def test_scales_overrides_and_set_apply_in_order(tmp_path):
    f = _study_file(tmp_path)
    cfg = resolve_config(_Cfg, f, scale="quick")
    assert (cfg.inner.lr, cfg.inner.epochs, cfg.scale) == (0.01, 5, "quick")
    user = tmp_path / "user.yaml"
    user.write_text("inner: {epochs: 7}\n")
    cfg = resolve_config(_Cfg, f, scale="smoke", config_file=user, overrides=["inner.lr=2e-4", "free.x=[1, 2]"])
    assert (cfg.inner.lr, cfg.inner.epochs, cfg.free) == (2e-4, 7, {"x": [1, 2]})


@pytest.mark.parametrize("overrides, message", [
    (["inner.lrr=1"], "unknown key 'lrr'"),
    (["inner.epochs=abc"], "inner.epochs: expected an integer, found 'abc'"),
    (["inner.lr"], "expected the form"),
])
def test_bad_set_is_one_error_naming_key_and_expectation(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        resolve_config(_Cfg, _study_file(tmp_path), overrides=overrides)


def test_unknown_scale_and_empty_config_file(tmp_path):
    with pytest.raises(ConfigError, match=r"--scale: 'huge'; expected one of \['smoke', 'quick', 'paper'\]"):
        resolve_config(_Cfg, _study_file(tmp_path), scale="huge")
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n")
    with pytest.raises(ConfigError, match="the file is empty"):
        resolve_config(_Cfg, _study_file(tmp_path), config_file=empty)


def test_hash_ignores_device_and_workers_but_not_results_fields(tmp_path):
    f = _study_file(tmp_path)
    a = resolve_config(_Cfg, f)
    assert config_hash(a) == config_hash(a.replace(device="cuda", workers=4))
    b = a.replace(inner=a.inner.replace(lr=0.5))
    assert config_hash(a) != config_hash(b)
    assert config_differences(a.to_dict(), b.to_dict()) == ["inner.lr"]


def test_stage_is_skipped_when_done_with_the_same_hash(tmp_path):
    cfg = resolve_config(_Cfg, _study_file(tmp_path))
    calls = []
    run = Run("toy", cfg, tmp_path / "run")
    first = run.stage("simulate", lambda folder, x: calls.append(x) or {"x": x, "nan": float("nan")}, 3)
    again = Run("toy", cfg, tmp_path / "run").stage("simulate", lambda folder, x: calls.append(x), 4)
    assert calls == [3] and first == again == {"x": 3, "nan": None}  # standard JSON: NaN -> null
    done = json.loads((tmp_path / "run" / "simulate" / "done.json").read_text())
    assert done["config_hash"] == config_hash(cfg)
    other = Run("toy", cfg.replace(seed=1), tmp_path / "run")
    assert other.stage("simulate", lambda folder: "redone") == "redone"
    with pytest.raises(ConfigError, match="stage: 'fit'"):
        run.stage("fit", lambda folder: None)


def _metrics():
    rows = []
    for case, (a, b) in enumerate([(30.0, 31.0), (29.0, 31.5), (33.0, 33.2), (28.0, 30.0), (31.0, 30.5), (30.0, 32.0)]):
        rows += [{"case": f"c{case}", "method": "input", "metric": "psnr", "value": a, "dataset": "torso"},
                 {"case": f"c{case}", "method": "u2net", "metric": "psnr", "value": b, "dataset": "torso"}]
    return pd.DataFrame(rows)


def test_claims_and_paper_values_are_computed_from_the_table():
    from scipy.stats import wilcoxon

    df = _metrics()
    c = evaluate_claim(df, Claim("U2 > input", "psnr", "u2net", "input", where={"dataset": "torso"}))
    d = [1.0, 2.5, 0.2, 2.0, -0.5, 2.0]
    assert c["holds"] is True and c["n"] == 6
    assert c["mean_difference"] == pytest.approx(sum(d) / 6)
    assert c["p_value"] == pytest.approx(wilcoxon(d).pvalue)
    assert evaluate_claim(df, Claim("lower", "psnr", "u2net", "input", higher=False))["holds"] is False
    assert our_value(df, PaperValue("t1", "psnr", "u2net", 40.8, {"dataset": "torso"})) == pytest.approx(
        df[df.method == "u2net"].value.mean())
    assert our_value(df, PaperValue("t1", "psnr", "esrgan", 40.1)) is None
    # The paired t-test (the myocardial perfusion paper's): scipy's ttest_rel on the same pairs.
    from scipy.stats import ttest_rel

    t = evaluate_claim(df, Claim("U2 > input", "psnr", "u2net", "input", where={"dataset": "torso"}), test="t")
    assert t["test"] == "paired t" and c["test"] == "Wilcoxon"
    a = df[(df.method == "u2net") & (df.dataset == "torso")].sort_values("case").value.to_numpy()
    b = df[(df.method == "input") & (df.dataset == "torso")].sort_values("case").value.to_numpy()
    assert t["p_value"] == pytest.approx(ttest_rel(a, b).pvalue)
    with pytest.raises(InputError, match="test"):
        evaluate_claim(df, Claim("x", "psnr", "u2net", "input"), test="anova")


def test_results_contract_files(tmp_path):
    summary = write_results(tmp_path, _metrics(), study="toy", paper=[PaperValue("t1", "psnr", "input", 37.7)],
                            claims=[Claim("U2 > input", "psnr", "u2net", "input")], extra={"bad": float("inf")})
    paper = pd.read_csv(tmp_path / "paper.csv")
    assert list(paper.columns[:6]) == ["table", "metric", "method", "where", "paper_value", "our_value"]
    assert paper.our_value[0] == pytest.approx(_metrics().query("method == 'input'").value.mean())
    text = (tmp_path / "summary.json").read_text()
    assert "Infinity" not in text and json.loads(text)["bad"] is None
    assert summary["claims_holding"] == 1 and summary["n_cases"] == 6
    with pytest.raises(InputError, match="not lower case"):
        write_results(tmp_path, _metrics().assign(method="U2Net"), study="toy", paper=[], claims=[])


def test_registry_lists_every_study_with_its_config_file():
    assert "bone-spect" in available_studies()
    for name in available_studies():
        study = get_study(name)
        assert study.summary and study_config_file(name).is_file()
        for scale in ("smoke", "quick", "paper"):
            resolve_config(study.config_class, study_config_file(name), scale=scale)
    with pytest.raises(ConfigError, match=r"unknown study 'nope'; expected one of \["):
        get_study("nope")


def test_bad_inputs_leave_no_run_folder(tmp_path):
    out = tmp_path / "results"
    with pytest.raises(ConfigError):
        run_study("bone-spect", overrides=["train.optim.lr=fast"], out=out)
    with pytest.raises(InputError, match="--data"):
        run_study("bone-spect", data=tmp_path / "missing.csv", out=out)
    manifest = tmp_path / "cases.csv"
    (tmp_path / "a.npy").write_bytes(b"")
    manifest.write_text("case_id,split,input,target\np1,train,a.npy,a.npy\n")
    with pytest.raises(InputError, match=r"no column \['ct'\]"):
        run_study("bone-spect", data=manifest, out=out)
    dicom = tmp_path / "ct_series"
    dicom.mkdir()
    manifest.write_text(f"case_id,split,input,target,ct\np1,train,a.npy,a.npy,{dicom.name}\n")
    with pytest.raises(InputError, match="lies inside, the input"):
        run_study("bone-spect", data=manifest, out=dicom / "results")
    with pytest.raises(InputError, match="is not a folder"):
        run_study("bone-spect", data=manifest, out=manifest)
    assert not out.exists() and not (dicom / "results").exists()
