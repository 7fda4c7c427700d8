"""benchmarks/bench_models.py counts FLOPs and sets up its CPU paths consistently; nothing here is timed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_models.py"
SHAPE = (9, 9, 2)  # the smallest DynUNet3d takes (X, Y >= 9): counting runs the real step


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_models", _PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_every_cpu_path_counts_the_same_flops(bench):
    # A memory format or autocast changes how the step runs, not what it computes: an unequal count
    # would mean a path benchmarks a different network, and its GFLOP/s would not compare.
    counts = {}
    for path in bench.PATHS:
        counts[path] = bench.count_flops(bench.dynunet_step("dc-dynamic", path, SHAPE, 2))
    assert counts["float32"] > 0
    assert set(counts.values()) == {counts["float32"]}, counts


def test_dc_dynamic_counts_at_least_the_static_flops(bench):
    static, dynamic = (
        bench.count_flops(bench.dynunet_step(mode, "float32", SHAPE, 2)) for mode in ("static", "dc-dynamic")
    )
    assert dynamic >= static > 0


def test_unknown_cpu_path_is_refused(bench):
    with pytest.raises(ValueError, match="CPU path"):
        bench.dynunet_step("static", "float16", SHAPE, 2)


def test_cpu_paths_refuse_another_device(bench):
    with pytest.raises(SystemExit):
        bench.main(["--cpu-paths", "--device", "cuda"])


def test_the_dynamic_variant_is_listed(bench):
    modes = {kwargs.get("mode") for name, kwargs, *_ in bench.MODELS.values() if name == "dynunet3d"}
    assert modes == set(bench.DYNUNET_MODES)
