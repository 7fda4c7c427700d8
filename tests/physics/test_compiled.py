"""The compiled kernels (numba) against the torch operations they replace."""

import pytest
import torch

from spectdl.physics import _compiled
from spectdl.physics.rotation import RotationBank


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_compiled_rotation_gives_the_bytes_of_torchs_csr_product(dtype):
    n = 24
    fwd, adj = RotationBank(n, [0.0, 17.0, 90.0, 233.5]).matrices("cpu", dtype)
    g = torch.Generator().manual_seed(0)
    src, src2 = torch.rand(n * n, 7, generator=g, dtype=dtype), torch.rand(n * n, 3, generator=g, dtype=dtype)
    for m in fwd + adj:
        dst, dst2 = torch.empty(n * n, 7, dtype=dtype), torch.empty(n * n, 3, dtype=dtype)
        _compiled.rotate(m, src, dst, src2, dst2)
        assert torch.equal(dst, torch.sparse.mm(m, src)) and torch.equal(dst2, torch.sparse.mm(m, src2))
        base = torch.rand(n * n, 7, generator=g, dtype=dtype)
        acc = base.clone()
        _compiled.rotate(m, src, acc, accumulate=True)
        assert torch.equal(acc, base.add_(torch.sparse.mm(m, src)))


def test_compiled_rotation_on_one_thread_gives_the_same_bytes():
    n = 32
    (m,), _ = RotationBank(n, [31.0]).matrices("cpu", torch.float32)
    src = torch.rand(n * n, 16, generator=torch.Generator().manual_seed(1))
    many, one = torch.empty(n * n, 16), torch.empty(n * n, 16)
    saved = torch.get_num_threads()
    try:
        _compiled.rotate(m, src, many)
        torch.set_num_threads(1)
        _compiled.rotate(m, src, one)
    finally:
        torch.set_num_threads(saved)
    assert torch.equal(one, many)


def test_compiled_kernels_leave_torchs_thread_count_as_it_was():
    """numba's OpenMP layer resets the OpenMP thread count when it starts; the kernels restore it,
    so the simulation workers' one thread (and a user's torch.set_num_threads) holds."""
    import subprocess
    import sys

    code = ("import torch; torch.set_num_threads(1)\n"
            "from spectdl.physics import _compiled\n"
            "from spectdl.physics.rotation import RotationBank\n"
            "(m,), _ = RotationBank(16, [31.0]).matrices('cpu', torch.float32)\n"
            "_compiled.rotate(m, torch.rand(256, 4), torch.empty(256, 4))\n"
            "import numba; print(torch.get_num_threads(), numba.get_num_threads())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "1"]
