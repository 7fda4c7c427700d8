import pytest
import torch

from spectdl.errors import GeometryError, InputError
from spectdl.geometry import VoxelGrid
from spectdl.phantoms import Phantom, brain2d
from spectdl.phantoms.base import check_grid, sample_seeds


def test_seeds_are_consecutive_from_the_seed_and_reproducible_from_a_generator():
    assert sample_seeds(3, 41, None) == [41, 42, 43]
    a = sample_seeds(4, None, torch.Generator().manual_seed(5))
    b = sample_seeds(4, None, torch.Generator().manual_seed(5))
    assert a == b and a[1:] == [a[0] + 1, a[0] + 2, a[0] + 3]
    assert sample_seeds(2, None, None) != sample_seeds(2, None, None)  # fresh entropy, recorded


@pytest.mark.parametrize("seed", [-1, 1.5, "3", True, 2**62])
def test_bad_seeds_are_rejected(seed):
    with pytest.raises(InputError, match="seed"):
        sample_seeds(1, seed, None)


def test_seed_and_generator_together_are_rejected():
    with pytest.raises(InputError, match="seed, generator"):
        sample_seeds(1, 1, torch.Generator())


def test_check_grid_names_the_argument():
    with pytest.raises(GeometryError, match="grid: expected a 3-D VoxelGrid, found 2-D"):
        check_grid(VoxelGrid((4, 4), 1.0), 3)
    with pytest.raises(GeometryError, match="grid: expected a spectdl.geometry.VoxelGrid"):
        check_grid((4, 4, 4), 3)


def test_phantom_to_changes_float_dtype_but_keeps_int_labels():
    p = brain2d(batch_size=2, seed=0)
    q = p.to(dtype=torch.float64)
    assert isinstance(q, Phantom) and q.activity.dtype == torch.float64 and q.mu_per_cm.dtype == torch.float64
    assert q.labels.dtype == torch.int64 and q.batch_size == 2
    assert torch.equal(q.activity.float(), p.activity)
