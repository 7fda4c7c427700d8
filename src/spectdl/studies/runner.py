"""Running a study: the run folder, its stages, ``done.json`` and ``--resume``.

A run lives in ``OUT/<study>/<run-id>/`` (run id ``YYYYmmdd-HHMMSS-<scale>-seed<seed>``)::

    config.yaml          the fully resolved config
    run.json             study, config hash, creation time
    environment.json     versions, device, git commit, seed, wall time per stage
    simulate/ reconstruct/ train/ predict/ evaluate/ report/    one folder per stage, each ending
                         with an atomically written done.json {stage, config_hash, result, wall_s}
    metrics.csv paper.csv summary.json figures/ report.html    the results contract

A stage whose ``done.json`` holds the run's config hash is skipped and its recorded result
returned; any other stage runs again from the start of its folder (every stage function is
written to restart cleanly, and training resumes from its own last checkpoint), so a run killed at
any moment and resumed ends with the same results as one never interrupted.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from spectdl.errors import ConfigError, InputError
from spectdl.io.atomic import atomic_write
from spectdl.studies.config import config_differences, config_hash, resolve_config, study_config_file
from spectdl.studies.registry import get_study

#: Stage names in data-flow order; a study runs those it needs ("pairs": acquisitions made from the
#: simulation, e.g. real-like repeat scans; "features": feature networks of metrics and losses;
#: "real_scan": inference on a real scan without a ground truth).
STAGES = ("simulate", "pairs", "reconstruct", "features", "train", "predict", "real_scan", "evaluate", "report")
DONE = "done.json"


def _jsonable(value: Any) -> Any:
    """Standard JSON: NaN and ±inf become ``null`` (``json`` would write non-standard tokens)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # numpy and torch scalars
        try:
            return _jsonable(value.item())
        except (TypeError, ValueError):
            pass
    return value


def write_json(path: Path, obj: Any) -> Path:
    """Atomically write standard JSON (NaN/inf as null)."""
    text = json.dumps(_jsonable(obj), indent=2, default=str, allow_nan=False) + "\n"
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"), overwrite=True)


def write_text(path: Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"), overwrite=True)


def _git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("spectdl", "torch", "numba", "numpy", "scipy", "lightning", "h5py", "scikit-image", "pandas"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    from spectdl.physics import forward_loop

    out["forward_loop"] = forward_loop()  # the projector's compiled or torch loops (not bit-identical)
    return out


class Run:
    """One study run: its folder, its config and hash, and the stages it has done."""

    def __init__(self, study: str, config, run_dir: Path, *, reporter: Callable[[Path], Path] | None = None,
                 progress: Callable[[str], None] | None = None):
        self.study, self.config, self.dir = study, config, Path(run_dir)
        self.hash = config_hash(config)
        self.reporter = reporter
        self.progress = progress or (lambda message: None)
        self.env_path = self.dir / "environment.json"
        self.environment = self._load_environment()

    # -- environment ---------------------------------------------------------------------------
    def _load_environment(self) -> dict[str, Any]:
        if self.env_path.exists():
            try:
                return json.loads(self.env_path.read_text(encoding="utf-8"))
            except ValueError:
                pass
        import torch

        return {
            "study": self.study, "config_hash": self.hash, "versions": _versions(), "git_commit": _git_commit(),
            "platform": platform.platform(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "device": self.config.device,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "seed": self.config.seed, "stages": {},
        }

    def _save_environment(self) -> None:
        write_json(self.env_path, self.environment)

    # -- stages --------------------------------------------------------------------------------
    def done(self, name: str) -> dict[str, Any] | None:
        """The ``done.json`` of stage ``name`` when it holds this run's hash, else ``None``."""
        path = self.dir / name / DONE
        if not path.is_file():
            return None
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            return None
        return record if isinstance(record, dict) and record.get("config_hash") == self.hash else None

    def stage(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(stage_dir, *args, **kwargs)`` unless the stage is done; its JSON-able return value
        is recorded in ``done.json`` and returned (also when skipped)."""
        if name not in STAGES:
            raise ConfigError(f"stage: {name!r}; expected one of {list(STAGES)}")
        record = self.done(name)
        if record is not None:
            self.progress(f"{name}: done before, skipped")
            return record["result"]
        folder = self.dir / name
        folder.mkdir(parents=True, exist_ok=True)
        self.progress(f"{name}…")
        start = time.perf_counter()
        result = _jsonable(fn(folder, *args, **kwargs))
        wall = time.perf_counter() - start
        self.environment["stages"][name] = {"wall_s": wall, "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
        self._save_environment()
        write_json(folder / DONE, {"stage": name, "config_hash": self.hash, "wall_s": wall, "result": result})
        return result

    def skip(self, name: str, why: str) -> dict[str, Any]:
        """Record stage ``name`` as not needed by this run (e.g. no simulation with ``--data``)."""
        return self.stage(name, lambda folder: {"skipped": why})

    def report(self) -> Any:
        """The report stage, with the reporter the caller gave (the CLI passes spectdl.report's)."""
        if self.reporter is None:
            return self.skip("report", "no reporter given (spectdl report RUN_DIR builds it)")
        return self.stage("report", lambda folder: {"report": str(self.reporter(self.dir))})


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    summary: dict[str, Any]
    resumed: bool


def _run_id(config) -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{config.scale}-seed{config.seed}"


def latest_run(root: Path) -> Path | None:
    """The newest run folder under ``root`` (run ids sort by their time stamp)."""
    if not root.is_dir():
        return None
    runs = sorted(p for p in root.iterdir() if p.is_dir() and (p / "run.json").is_file())
    return runs[-1] if runs else None


def _check_out(out: Path, inputs: Sequence[Path]) -> None:
    """``out`` must be a folder (or not exist) and may not be, or lie inside, any input: a manifest
    file, or a file or folder one of its cases reads."""
    from spectdl.data import manifest_inputs
    from spectdl.io.atomic import check_output_folder, check_outputs

    check_output_folder(out, expected="a folder for the results")
    check_outputs([out.resolve()], [p for i in inputs for p in manifest_inputs(i)])


def run_study(name: str, *, scale: str = "smoke", config_file: str | Path | None = None,
              overrides: Sequence[str] = (), data: str | Path | None = None, out: str | Path = "results",
              resume: bool = False, device: str | None = None, seed: int | None = None,
              reporter: Callable[[Path], Path] | None = None,
              progress: Callable[[str], None] | None = None) -> RunResult:
    """Run study ``name`` into ``out/<name>/<run-id>/`` and return its folder and ``summary.json``.

    Everything is checked before any folder is made: the study name, the scale, the config (file and
    ``--set`` overrides), the data manifest (by the study's ``check_data``) and, with ``resume``, that
    the latest run under ``out/<name>`` was made with the same config. ``reporter(run_dir)`` writes
    the report (``spectdl.report.build_study_report``; the studies layer does not import the report).
    """
    study = get_study(name)
    data_path = None if data is None else Path(data).resolve()
    if data_path is not None and not data_path.is_file():
        raise InputError(f"--data: {data} is not a file; expected a case manifest (CSV or YAML)")
    cfg = resolve_config(study.config_class, study_config_file(name), scale=scale,
                         config_file=None if config_file is None else Path(config_file), overrides=overrides,
                         device=device, seed=seed, data=None if data_path is None else str(data_path))
    root = Path(out) / name
    _check_out(Path(out), [data_path] if data_path is not None else [])
    if cfg.data is not None and study.check_data is not None:
        study.check_data(cfg)
    run_dir = latest_run(root) if resume else None
    resumed = run_dir is not None
    if run_dir is not None:
        meta = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
        if meta.get("config_hash") != config_hash(cfg):
            import yaml

            old = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")) or {}
            diff = config_differences(old, cfg.to_dict())
            raise ConfigError(
                f"--resume: the latest run {run_dir} was made with another config (hash {meta.get('config_hash')}, "
                f"now {config_hash(cfg)}; differing keys: {', '.join(diff[:6]) or 'none listed'}); run without "
                "--resume for a new run, or with the same --scale/--config/--set"
            )
    else:
        run_dir = root / _run_id(cfg)
        k = 1
        while run_dir.exists():
            k += 1
            run_dir = root / f"{_run_id(cfg)}-{k}"
        run_dir.mkdir(parents=True)
        import yaml

        write_text(run_dir / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        write_json(run_dir / "run.json", {"study": name, "config_hash": config_hash(cfg),
                                          "created": time.strftime("%Y-%m-%dT%H:%M:%S")})
    run = Run(name, cfg, run_dir, reporter=reporter, progress=progress)
    started = time.perf_counter()
    study.run(run, cfg)
    run.report()
    run.environment["wall_s_last_invocation"] = time.perf_counter() - started
    run._save_environment()
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    return RunResult(run_dir, summary, resumed)
