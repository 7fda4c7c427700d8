"""The ``spectdl`` command line: thin wrappers that parse, call the library and print with rich.

A user error (any :class:`spectdl.errors.SpectdlError`) prints one red line and exits with status 2;
``--verbose`` shows the traceback as well. Nothing imports this module.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from spectdl.errors import SpectdlError

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


@app.command()
def demo(
    out: Path = typer.Option(Path("results/demo"), "--out", "-o", help="Folder for the run's results."),
    quick: bool = typer.Option(False, "--quick", help="Reduced size (for CI): smaller grid, fewer iterations."),
    seed: int = typer.Option(0, "--seed", help="Seed of every random draw (noise, phantoms, training)."),
) -> None:
    """Run a complete small study on built-in simulated data, on the CPU, with no downloads.

    Example: ``spectdl demo`` (about a minute), or ``spectdl demo --quick`` (seconds).
    """
    from spectdl.report.html import build_demo_report
    from spectdl.studies.demo import DemoConfig, run_demo

    with console.status("running the demo study (simulate → OSEM → train → enhance → evaluate)…"):
        result = run_demo(DemoConfig(out_dir=out, quick=quick, seed=seed))
        report = build_demo_report(result.run_dir)
    Console().print(_summary_table(result.summary))
    Console().print(f"report: [bold]{report}[/bold]")


@app.command()
def report(run_dir: Path = typer.Argument(..., help="A run folder written by `spectdl demo`.")) -> None:
    """Rebuild ``report.html`` (and its figures) from a run folder's saved result files."""
    from spectdl.report.html import build_demo_report

    Console().print(f"report: [bold]{build_demo_report(run_dir)}[/bold]")


def _summary_table(summary: dict):
    from rich.table import Table

    t = Table(title="spectdl demo: held-out 1/7-count scans vs the standard scan")
    t.add_column("metric")
    t.add_column("1/7 input", justify="right")
    t.add_column("enhanced", justify="right")
    t.add_column("Wilcoxon p", justify="right")
    tests = summary.get("tests", {})
    for key, label in (("psnr", "PSNR (dB)"), ("ssim", "SSIM")):
        sfx = "_db" if key == "psnr" else ""
        p = tests.get(key, {}).get("p_value")
        t.add_row(label, f"{summary[key + '_input' + sfx]:.3f}", f"{summary[key + '_enhanced' + sfx]:.3f}",
                  "n/a" if p is None else f"{p:.2g}")
    for q, v in summary.get("sphere_abs_error_vs_standard", {}).items():
        t.add_row(f"|{q} − standard|", f"{v['mean_abs_error_input']:.3f}", f"{v['mean_abs_error_enhanced']:.3f}", "")
    return t


def main(argv: Optional[list[str]] = None) -> None:
    """Entry point: runs the typer app and turns spectdl errors into one red line and exit code 2."""
    try:
        app(args=argv, standalone_mode=False)
    except SpectdlError as exc:
        if _state["verbose"]:
            traceback.print_exc()
        console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        console.print("[red]interrupted[/red]")
        sys.exit(130)
    except Exception as exc:  # click usage errors and the like
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Exit):
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(1)
        raise


if __name__ == "__main__":  # pragma: no cover
    main()
