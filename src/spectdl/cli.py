"""The ``spectdl`` command line: thin wrappers that parse, call the library and print with rich.

A user error (any :class:`spectdl.errors.SpectdlError`) prints one red line and exits with status 2;
``--verbose`` shows the traceback as well. Nothing imports this module.
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from spectdl.errors import InputError, SpectdlError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="spectdl: deep learning for SPECT, from phantoms and DICOM to clinical statistics.",
)
console = Console(stderr=True)
_state = {"verbose": False}


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Show tracebacks on errors.")) -> None:
    _state["verbose"] = verbose


study_app = typer.Typer(no_args_is_help=True, help="The published studies: list them, run one.")
app.add_typer(study_app, name="study")


@study_app.command("list")
def study_list() -> None:
    """Each registered study with one line on what it reproduces."""
    from rich.table import Table

    from spectdl.studies import available_studies, get_study

    t = Table(title="spectdl studies (spectdl study run NAME --scale smoke|quick|paper)")
    t.add_column("name")
    t.add_column("reproduces")
    for name in available_studies():
        t.add_row(name, get_study(name).summary)
    Console().print(t)


def _run_study(name: str, scale: str, config: Optional[Path], overrides: list[str], data: Optional[Path], out: Path,
               resume: bool, device: Optional[str], seed: Optional[int]) -> None:
    from spectdl.report.study import build_study_report
    from spectdl.studies import run_study

    if device is not None:
        _check_device(device)
    with console.status(f"study {name} ({scale})…") as status:
        result = run_study(name, scale=scale, config_file=config, overrides=overrides, data=data, out=out,
                           resume=resume, device=device, seed=seed, reporter=build_study_report,
                           progress=lambda msg: status.update(f"study {name} ({scale}): {msg}"))
    Console().print(_claims_table(result.summary))
    Console().print(f"results: [bold]{result.run_dir}[/bold]; report: [bold]{result.run_dir / 'report.html'}[/bold]")


def _check_device(device: str) -> None:
    import torch

    try:
        d = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"--device: {device!r} is not a device; expected cpu, cuda or cuda:N") from None
    if d.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device: {device!r}, but this torch ({torch.__version__}) has no CUDA device; "
                           "expected cpu, or a CUDA build of torch on a machine with a GPU")
    if d.type not in ("cpu", "cuda"):
        raise InputError(f"--device: {device!r}; expected cpu, cuda or cuda:N")


def _out_folder(out: Path) -> None:
    """``-o`` must be a folder or not exist yet."""
    from spectdl.io.atomic import check_output_folder

    check_output_folder(out, expected="a folder (or a new name) for the outputs")


@study_app.command("run")
def study_run(
    name: str = typer.Argument(..., help="A study name from `spectdl study list`."),
    scale: str = typer.Option("smoke", "--scale", help="smoke (seconds), quick (<= 10 min on CPU) or paper (GPU)."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML with keys of the study config to change."),
    overrides: list[str] = typer.Option([], "--set", help="Change one field: --set train.optim.lr=1e-4 (repeatable)."),
    data: Optional[Path] = typer.Option(None, "--data", help="A manifest of your own cases (CSV/YAML); skips simulation."),
    out: Path = typer.Option(Path("results"), "--out", "-o", help="Results go to OUT/<study>/<run-id>/."),
    resume: bool = typer.Option(False, "--resume", help="Continue the latest run of this study under OUT."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda."),
    seed: Optional[int] = typer.Option(None, "--seed", help="The run's seed (default: the config's)."),
) -> None:
    """Run a study end to end: simulate (or read --data) → reconstruct → train → predict → evaluate → report.

    Example: ``spectdl study run bone-spect --scale quick``; ``--resume`` after an interruption skips
    every finished stage and resumes training from its last checkpoint.
    """
    _run_study(name, scale, config, overrides, data, out, resume, device, seed)


@app.command()
def demo(
    out: Path = typer.Option(Path("results"), "--out", "-o", help="Results go to OUT/bone-spect/<run-id>/."),
    seed: int = typer.Option(0, "--seed", help="Seed of every random draw (noise, phantoms, training)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the latest bone-spect run under OUT."),
) -> None:
    """The main job: the fast-bone-SPECT study at its quick scale, on the CPU, with no downloads.

    Same as ``spectdl study run bone-spect --scale quick`` (about 8 minutes on 2 CPU cores).
    """
    _run_study("bone-spect", "quick", None, [], None, out, resume, None, seed)


@app.command()
def report(run_dir: Path = typer.Argument(..., help="A run folder written by `spectdl study run` or `spectdl demo`.")) -> None:
    """Rebuild ``report.html`` (and its figures) from a run folder's saved result files."""
    from spectdl.report.study import build_study_report

    Console().print(f"report: [bold]{build_study_report(run_dir)}[/bold]")


@app.command()
def reconstruct(
    projections: Path = typer.Argument(..., help="Raw SPECT projections (DICOM NM TOMO file)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (NIfTI, DICOM series, PNG)."),
    ct: Optional[Path] = typer.Option(None, "--ct", help="CT series folder for attenuation correction."),
    energy_kev: float = typer.Option(208.0, "--energy-kev", help="Photopeak energy in keV (picks the window)."),
    collimator: str = typer.Option("MEGP", "--collimator", help="LEHR, LEGP or MEGP; 'none' for ideal lines."),
    iters: int = typer.Option(4, "--iters", help="OSEM iterations."),
    subsets: int = typer.Option(10, "--subsets", help="OSEM subsets."),
    scatter: bool = typer.Option(True, "--scatter/--no-scatter", help="Triple-energy-window scatter."),
    rebin: int = typer.Option(1, "--rebin", help="Sum rebin×rebin detector pixels first (faster)."),
    attenuation_cache_mb: float = typer.Option(2048.0, "--attenuation-cache-mb", min=0,
                                               help="Memory budget (MB) for the cached attenuation factors."),
    over_budget: str = typer.Option("half", "--over-budget",
                                    help="Above the budget: 'half' (float16 cache) or 'recompute' (per view)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
) -> None:
    """OSEM reconstruction of a real acquisition with CT attenuation, collimator response and TEW scatter.

    Example: ``spectdl reconstruct bed1_projections.dcm --ct CT/ -o results/real`` writes
    ``recon.nii.gz``, a DICOM series in ``dicom/`` and ``slices.png``.
    """
    from spectdl.io import read_ct_series, read_projections, write_dicom_series, write_nifti
    from spectdl.recon.real import reconstruct_acquisition
    from spectdl.report.recon import recon_slices_figure

    from spectdl.io.atomic import check_outputs

    if device is not None:
        _check_device(device)
    if over_budget not in ("half", "recompute"):
        raise InputError(f"--over-budget: {over_budget!r}; expected 'half' or 'recompute'")
    _out_folder(out)
    check_outputs([out, out / "recon.nii.gz", out / "dicom", out / "slices.png"],
                  [projections, *([ct] if ct is not None else [])])
    acq = read_projections(projections)
    ct_vol = read_ct_series(ct) if ct is not None else None
    check_outputs([out, out / "recon.nii.gz", out / "dicom", out / "slices.png"],
                  [projections, *([ct] if ct is not None else []), *[Path(p) for p in getattr(ct_vol, "source", ()) or ()]])
    coll = None if collimator.lower() == "none" else collimator
    with console.status(f"OSEM {iters}×{subsets}…"):
        recon = reconstruct_acquisition(acq, ct_vol, energy_kev=energy_kev, n_iters=iters, n_subsets=subsets,
                                        collimator=coll, scatter=scatter, rebin=rebin, device=device,
                                        attenuation_cache_mb=attenuation_cache_mb, over_budget=over_budget)
    out.mkdir(parents=True, exist_ok=True)
    nii = write_nifti(recon.volume, None, out / "recon.nii.gz", overwrite=overwrite)
    files = write_dicom_series(recon.volume, recon.acquisition, f"spectdl OSEM {iters}i{subsets}s",
                               out / "dicom", overwrite=overwrite)
    Console().print(f"wrote {nii}, {len(files)} DICOM files in {out / 'dicom'}")
    if ct_vol is not None:
        Console().print(f"wrote {recon_slices_figure(recon, ct_vol, out / 'slices.png')}")


@app.command()
def enhance(
    input_path: Path = typer.Argument(..., metavar="INPUT", help="Low-count image: NIfTI file or DICOM series folder."),
    checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help="A checkpoint written by `spectdl train`."),
    output: Path = typer.Option(..., "--output", "-o", help="Output path (same format as the input)."),
    batch_size: int = typer.Option(8, "--batch-size", help="Slices or windows per forward pass."),
    overlap: float = typer.Option(0.5, "--overlap", help="Sliding-window overlap for 3-D networks (0–<1)."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output."),
) -> None:
    """Apply a trained network to a volume: slice-wise (2-D nets) or sliding window (3-D nets).

    Example: ``spectdl enhance --checkpoint runs/bone/best.json low.nii.gz -o enhanced.nii.gz``.
    The geometry is kept; DICOM input gives a new derived DICOM series.
    """
    from spectdl.inference import enhance_file
    from spectdl.io.atomic import check_outputs
    from spectdl.training.checkpoint import checkpoint_path

    _check_device(device)
    check_outputs([output], [input_path, checkpoint_path(checkpoint)])
    path = enhance_file(checkpoint, input_path, output, batch_size=batch_size, overlap=overlap, device=device,
                        overwrite=overwrite)
    Console().print(f"wrote {path}")


@app.command()
def simulate(
    config: Optional[Path] = typer.Argument(None, help="Simulation config (YAML): phantom, grid, orbit, counts, recon."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder for the HDF5 shards and manifest.json."),
    workers: int = typer.Option(2, "--workers", help="Processes; results do not depend on this number."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing simulation in OUT (with --shards: those shards)."),
    shards: Optional[str] = typer.Option(None, "--shards", help="START:STOP: make only shards START..STOP-1 (0-based), no manifest."),
    finalize: Optional[Path] = typer.Option(None, "--finalize", help="Check the shards made with --shards in this folder and write manifest.json."),
) -> None:
    """Simulate paired data: phantom → projector → Poisson and thinned counts (→ OSEM) into HDF5 shards.

    Example: ``spectdl simulate brain.yaml -o data/brain`` writes ``shard-*.h5`` and ``manifest.json``;
    any sample can be regenerated exactly from its recorded seed. Rerunning with the same seed gives
    identical bytes. On several machines: ``spectdl simulate brain.yaml -o data/brain --shards 0:4``
    (and the other ranges, anywhere), then ``spectdl simulate --finalize data/brain``.
    """
    from spectdl.data import simulate as run_simulation
    from spectdl.io.atomic import check_outputs

    if finalize is not None:
        if config is not None or out is not None or shards is not None:
            raise InputError("--finalize: takes only the folder (spectdl simulate --finalize DIR); expected no CONFIG, "
                             "-o or --shards with it")
        from spectdl.data import finalize as finalize_simulation

        res = finalize_simulation(finalize)
        Console().print(f"{res.n_samples} samples in {len(res.shards)} shards ({res.bytes_written / 2**20:.1f} MiB) "
                        f"checked → {res.manifest_path}")
        return
    if config is None or out is None:
        raise InputError("simulate: expected CONFIG and -o/--out (or --finalize DIR)")
    _out_folder(out)
    check_outputs([out, out / "manifest.json"], [config])
    res = run_simulation(config, out, workers=workers, progress=True, overwrite=overwrite, shards=shards)
    if shards is not None:
        Console().print(f"shards {res.made[0]}:{res.made[-1] + 1}: {res.n_samples} samples in {len(res.shards)} shards "
                        f"({res.bytes_written / 2**20:.1f} MiB) in {res.seconds:.1f} s → {res.out_dir}; run "
                        f"`spectdl simulate --finalize {res.out_dir}` once every shard is made")
        return
    Console().print(f"{res.n_samples} samples in {len(res.shards)} shards ({res.bytes_written / 2**20:.1f} MiB) "
                    f"in {res.seconds:.1f} s → {res.manifest_path}")


def _dataset(path: Path, split: str, inputs: Optional[str], targets: Optional[str], normalize: Optional[str] = None):
    """A simulation manifest (``manifest.json``) or a manifest of real cases (CSV or YAML)."""
    from spectdl.data import ManifestDataset, SimulatedDataset, load_manifest

    if path.is_dir() or path.suffix == ".json":
        return SimulatedDataset(path, split=split, input=inputs.split(",") if inputs else None,
                                target=targets.split(",") if targets else None)
    return ManifestDataset(load_manifest(path), split, mode="slices", normalize=normalize,
                           input_columns=tuple(inputs.split(",")) if inputs else ("input",))


@app.command()
def train(
    config: Path = typer.Argument(..., help="Training config (YAML), e.g. spectdl/configs/bone_spect_demo.yaml."),
    data: Path = typer.Option(..., "--data", help="manifest.json of `spectdl simulate`, or a CSV/YAML case manifest."),
    out: Path = typer.Option(Path("runs/train"), "--out", "-o", help="Folder for checkpoints, logs and the config."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint in OUT."),
    devices: Optional[str] = typer.Option(None, "--devices", help="Lightning devices: 'auto', 1, 4, … (overrides the config)."),
    precision: Optional[str] = typer.Option(None, "--precision", help="e.g. 32-true or bf16-mixed (overrides the config)."),
    inputs: Optional[str] = typer.Option(None, "--inputs", help="Comma-separated stored keys (simulations) or columns stacked as input channels."),
    targets: Optional[str] = typer.Option(None, "--targets", help="Comma-separated stored keys of the target (simulations)."),
    normalize: Optional[str] = typer.Option(None, "--normalize", help="Case manifests: divide input and target by the input volume's mean, mean_positive or max (recorded for `spectdl enhance`)."),
) -> None:
    """Train a registered model with the loss of its study; keeps the best and the last checkpoint.

    The ``train`` split of DATA trains and the ``val`` split validates. Several GPUs: set
    ``trainer: {devices: 4, strategy: ddp}`` or run under ``torchrun``/SLURM (see the README).
    """
    from spectdl.data import manifest_inputs
    from spectdl.io.atomic import check_outputs
    from spectdl.training import fit, load_config

    _out_folder(out)
    check_outputs([out, out / "config.yaml", out / "checkpoints", out / "logs"], [config, *manifest_inputs(data)])
    cfg = load_config(config)
    train_data = _dataset(data, "train", inputs, targets, normalize)
    val_data = _dataset(data, "val", inputs, targets, normalize)
    norm = getattr(train_data, "normalization", None)
    if devices is not None or precision is not None or norm is not None:
        d = cfg.to_dict()
        if devices is not None:
            d["trainer"]["devices"] = int(devices) if devices.isdigit() else devices
        if precision is not None:
            d["trainer"]["precision"] = precision
        if norm is not None:
            d["checkpoint"]["metadata"] = {**d["checkpoint"].get("metadata", {}), "normalization": norm}
        cfg = load_config(d)
    result = fit(cfg, train_data, val_data, out, resume=resume)
    Console().print(f"best checkpoint {result.best_checkpoint} (score {result.best_score}); "
                    f"last {result.last_checkpoint}; {result.epochs_completed} epochs")


@app.command()
def evaluate(
    manifest: Path = typer.Argument(..., help="Case manifest (CSV or YAML): target = reference, input = baseline."),
    predictions: Path = typer.Option(..., "--predictions", "-p", help="Folder of <case_id>.nii.gz (or .npy, or DICOM folders)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for metrics.csv and summary.json."),
    baseline: bool = typer.Option(True, "--baseline/--no-baseline", help="Also score the input and test prediction vs input."),
    split: str = typer.Option("test", "--split", help="Which split of the manifest to score."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing metrics.csv and summary.json."),
) -> None:
    """Per-case PSNR, SSIM, NRMSE and MAE against the target, with paired Wilcoxon tests vs the input.

    Example: ``spectdl evaluate cases.csv --predictions enhanced/ -o results/eval``.
    """
    from rich.table import Table

    from spectdl.data import manifest_inputs
    from spectdl.io.atomic import check_outputs
    from spectdl.studies.evaluate import METRICS, evaluate_manifest

    _out_folder(out)
    check_outputs([out, out / "metrics.csv", out / "summary.json"],
                  [*manifest_inputs(manifest), predictions])
    res = evaluate_manifest(manifest, predictions, out, baseline=baseline, split=split, overwrite=overwrite)
    t = Table(title=f"{res.summary['n_cases']} cases ({split})")
    t.add_column("metric")
    t.add_column("prediction", justify="right")
    if baseline:
        t.add_column("input", justify="right")
        t.add_column("Wilcoxon p", justify="right")
    for m in METRICS:
        cells = [m, f"{res.summary[f'{m}_prediction']:.4f}"]
        if baseline:
            p = res.summary[f"{m}_wilcoxon"].get("p_value")
            cells += [f"{res.summary[f'{m}_baseline']:.4f}", "n/a" if p is None or p != p else f"{p:.3g}"]
        t.add_row(*cells)
    Console().print(t)
    Console().print(f"wrote {res.metrics_csv} and {res.summary_json}")


def _claims_table(summary: dict):
    from rich.table import Table

    t = Table(title=f"{summary.get('study')}: the paper's claims on held-out cases")
    t.add_column("claim")
    t.add_column("holds")
    t.add_column("method", justify="right")
    t.add_column("baseline", justify="right")
    t.add_column("Wilcoxon p", justify="right")
    for c in summary.get("claims", []):
        p = c.get("p_value")
        fmt = lambda v: "n/a" if v is None else f"{v:.4g}"  # noqa: E731
        t.add_row(c["text"], {True: "yes", False: "no", None: "n/a"}[c.get("holds")], fmt(c.get("mean_method")),
                  fmt(c.get("mean_baseline")), fmt(p))
    return t


def _click_kind(exc: BaseException) -> str | None:
    """``"usage"``, ``"exit"`` or ``"abort"`` for click's own exceptions, found by class name.

    typer >= 0.29 ships its own copy of click (``typer._click``) and plain ``click`` may not be
    installed at all, so the classes cannot be imported by one fixed name.
    """
    names = {cls.__name__ for cls in type(exc).__mro__}
    if "ClickException" in names and hasattr(exc, "show"):
        return "usage"
    if "Exit" in names and hasattr(exc, "exit_code"):
        return "exit"
    if "Abort" in names:
        return "abort"
    return None


def _save_traceback() -> Path | None:
    import tempfile
    import time

    try:
        fd, name = tempfile.mkstemp(prefix=f"spectdl-traceback-{time.strftime('%Y%m%d-%H%M%S')}-", suffix=".txt")
        with open(fd, "w", encoding="utf-8") as fh:
            fh.write(traceback.format_exc())
        return Path(name)
    except OSError:
        return None


def _one_line(message: str) -> str:
    """A message of several lines as its first line plus how many more there are and where they are:
    printed in full with ``--verbose`` (the traceback shows it), and always saved to a temporary file."""
    lines = [ln for ln in message.splitlines() if ln.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else message
    import tempfile

    where = ""
    try:
        fd, name = tempfile.mkstemp(prefix="spectdl-error-", suffix=".txt")
        with open(fd, "w", encoding="utf-8") as fh:
            fh.write(message.rstrip("\n") + "\n")
        where = f", or see {name}"
    except OSError:
        pass
    if _state["verbose"]:
        console.print(message, highlight=False, markup=False, soft_wrap=True)
    return f"{lines[0]} ({len(lines) - 1} more problems; run with --verbose{where})"


def _fail(message: str, code: int = 2) -> None:
    console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True, markup=True)
    sys.exit(code)


def _default_environment() -> None:
    """OpenMP's passive wait for the command line, unless the user chose a policy.

    Set before torch is imported (this module does not import it), so it reaches torch's OpenMP
    runtime and the simulation's worker processes. With torch's default (threads spin at the end of
    every parallel region) the projector slowed 3.0–3.4× next to one busy core of two; with the
    passive wait 1.4–1.5×, at 1.03–1.14× the idle time at 64³ and within ±5 % idle for an OSEM
    iteration at 128³ and a U-Net training step (``benchmarks/README.md``, 2026-12-06).
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main(argv: Optional[list[str]] = None) -> None:
    """Entry point: every error ends as one line on stderr and a non-zero exit status.

    spectdl's own errors and operating-system errors (permissions, a file where a folder was
    expected, ...) exit with 2; click usage errors with click's code (2); an unexpected exception
    is a bug: one line says so and names the file that holds its traceback (``--verbose`` prints it).
    """
    _default_environment()
    try:
        app(args=argv, standalone_mode=False)
    except SpectdlError as exc:
        if _state["verbose"]:
            traceback.print_exc()
        from rich.markup import escape

        _fail(escape(_one_line(str(exc))))
    except KeyboardInterrupt:
        console.print("[red]interrupted[/red]")
        sys.exit(130)
    except OSError as exc:
        if _state["verbose"]:
            traceback.print_exc()
        from rich.markup import escape

        what = f"{exc.strerror or type(exc).__name__}: {exc.filename}" if exc.filename else str(exc)
        _fail(escape(what))
    except Exception as exc:
        kind = _click_kind(exc)
        if kind == "usage":
            exc.show()  # type: ignore[attr-defined]
            sys.exit(getattr(exc, "exit_code", 2))
        if kind == "exit":
            sys.exit(getattr(exc, "exit_code", 0))
        if kind == "abort":
            sys.exit(1)
        if _state["verbose"]:
            traceback.print_exc()
            sys.exit(1)
        saved = _save_traceback()
        where = f"; traceback saved to {saved}" if saved else ""
        from rich.markup import escape

        _fail(escape(f"internal error (a bug in spectdl, please report it): {type(exc).__name__}: {exc}{where}"), 1)


if __name__ == "__main__":  # pragma: no cover
    main()
