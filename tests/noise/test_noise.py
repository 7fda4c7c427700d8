import math

import numpy as np
import pytest
import torch
from scipy import stats

from spectdl.errors import InputError
from spectdl.geometry import Orbit, VoxelGrid
from spectdl.noise import expected_counts, poisson, scale_to_counts, split_gates, thin
from spectdl.physics import SpectProjector


def test_poisson_matches_the_poisson_pmf():
    lam = 3.7
    n = poisson(torch.full((200_000,), lam, dtype=torch.float64), torch.Generator().manual_seed(0))
    assert n.dtype == torch.float64 and bool((n == n.round()).all())
    k = np.arange(0, 12)
    observed = np.array([(n.numpy() == v).sum() for v in k])
    expected = stats.poisson.pmf(k, lam) * n.numel()
    chi2 = ((observed - expected) ** 2 / expected).sum()
    assert chi2 < stats.chi2.ppf(0.999, len(k) - 1)


def test_thinning_gives_exact_poisson_of_the_reduced_mean():
    lam, f, m = 20.0, 0.25, 200_000
    full = poisson(torch.full((m,), lam, dtype=torch.float64), torch.Generator().manual_seed(1))
    kept = thin(full, f, torch.Generator().manual_seed(2))
    assert bool((kept <= full).all()) and bool((kept >= 0).all())
    # Poisson(f·λ): mean = variance = 5; standard errors sqrt(5/m) and ~sqrt(2·25/m).
    mean, var = float(kept.mean()), float(kept.var())
    assert abs(mean - f * lam) < 4 * math.sqrt(f * lam / m)
    assert abs(var - f * lam) < 4 * math.sqrt((2 * (f * lam) ** 2 + f * lam) / m)
    k = np.arange(0, 14)
    observed = np.array([(kept.numpy() == v).sum() for v in k])
    expected = stats.poisson.pmf(k, f * lam) * m
    assert ((observed - expected) ** 2 / expected).sum() < stats.chi2.ppf(0.999, len(k) - 1)
    # Paired with the full scan: the thinned counts are correlated with it (corr = sqrt(f)).
    corr = float(np.corrcoef(full.numpy(), kept.numpy())[0, 1])
    assert abs(corr - math.sqrt(f)) < 0.01


def test_thinning_is_reproducible_and_keeps_dtype():
    counts = torch.tensor([[0, 5, 17], [3, 0, 100]], dtype=torch.int32)
    a = thin(counts, 1 / 7, torch.Generator().manual_seed(9))
    b = thin(counts, 1 / 7, torch.Generator().manual_seed(9))
    assert a.dtype == torch.int32 and torch.equal(a, b)
    assert torch.equal(thin(counts, 1.0), counts) and int(thin(counts, 0.0).sum()) == 0


@pytest.mark.parametrize(
    "counts, fraction, match",
    [
        (torch.tensor([1.5, 2.0]), 0.5, "non-integer value 1.5"),
        (torch.tensor([-1.0, 2.0]), 0.5, "negative"),
        (torch.tensor([1.0, float("nan")]), 0.5, "NaN"),
        (torch.tensor([1.0, 2.0]), 1.5, "fraction"),
    ],
)
def test_thinning_rejects_bad_input(counts, fraction, match):
    with pytest.raises(InputError, match=match):
        thin(counts, fraction)


def test_scale_to_counts_and_expected_counts():
    y = torch.rand(3, 1, 4, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    s = scale_to_counts(y, torch.tensor([10.0, 20.0, 30.0], dtype=torch.float64))
    torch.testing.assert_close(s.sum((1, 2, 3)), torch.tensor([10.0, 20.0, 30.0], dtype=torch.float64))
    with pytest.raises(InputError, match="sums to 0"):
        scale_to_counts(torch.zeros(1, 4), 5.0)
    grid = VoxelGrid((16, 16), 4.0)
    P = SpectProjector(grid, Orbit.circular(10, 100.0))
    x = torch.zeros(1, 1, 16, 16, dtype=torch.float64)
    x[0, 0, 6:10, 6:10] = 2.0
    ybar = expected_counts(x, P, activity_mbq=500.0, sensitivity_cps_per_mbq=80.0, time_per_view_s=20.0)
    # No attenuation: every view sees all of it, 500 MBq × 80 cps/MBq × 20 s = 800 000 counts.
    torch.testing.assert_close(ybar.sum(-1), torch.full((1, 1, 10), 800_000.0, dtype=torch.float64))
    with pytest.raises(InputError, match="time_per_view_s"):
        expected_counts(x, P, 500.0, 80.0, 0.0)


def test_gate_split_is_multinomial_and_gives_independent_poisson_gates():
    """Poisson(λ) counts split into 8 equal gates: each gate Poisson(λ/8) (chi-square against scipy's pmf),
    gates uncorrelated (the thinning theorem), and the gates sum back to the counts exactly."""
    lam, m = 16.0, 100_000
    full = poisson(torch.full((m,), lam, dtype=torch.float64), torch.Generator().manual_seed(4))
    gates = split_gates(full, [1] * 8, torch.Generator().manual_seed(5))
    assert gates.shape == (8, m) and torch.equal(gates.sum(0), full)
    k = np.arange(0, 9)
    for g in gates.numpy():
        observed = np.array([(g == v).sum() for v in k])
        expected = stats.poisson.pmf(k, lam / 8) * m
        assert ((observed - expected) ** 2 / expected).sum() < stats.chi2.ppf(0.999, len(k) - 1)
    corr = np.corrcoef(gates.numpy())
    assert np.abs(corr[~np.eye(8, dtype=bool)]).max() < 5 / math.sqrt(m)
    # Unequal weights: mean of gate k is λ·w_k/Σw.
    w = [3, 1, 0, 4]
    uneven = split_gates(full, w, torch.Generator().manual_seed(6))
    for g, wk in zip(uneven, w):
        assert abs(float(g.mean()) - lam * wk / 8) < 4 * math.sqrt(lam * wk / 8 / m) + 1e-12
    assert torch.equal(split_gates(full[:5], [2.0], torch.Generator())[0], full[:5])


@pytest.mark.parametrize("weights, match", [([], "weights"), ([0, 0], "weights"), ([1, -1], "weights"),
                                            ("ab", "weights"), ([1, float("inf")], "weights")])
def test_gate_split_rejects_bad_weights(weights, match):
    with pytest.raises(InputError, match=match):
        split_gates(torch.tensor([1.0, 2.0]), weights)


def test_scaled_thinning_rmse_follows_theory_at_every_dose_level():
    """Low dose scaled by 1/f against its own full dose n: E[(k/f − n)²] = n(1 − f)/f, so over pixels the RMSE is
    √((1/f − 1)·mean count): 1 : √3 : √7 for 1/2, 1/4, 1/8 (the projection-space low-dose columns of Table 1)."""
    g = torch.Generator().manual_seed(11)
    lam = torch.linspace(2.0, 120.0, 64 * 64 * 32, dtype=torch.float64)  # a spread of pixel means, like projections
    full = poisson(lam, g)
    mean = float(full.mean())
    rmse = {}
    for f in (0.5, 0.25, 0.125):
        low = thin(full, f, g) / f
        rmse[f] = float(((low - full) ** 2).mean().sqrt())
        theory = math.sqrt((1 / f - 1) * mean)
        assert rmse[f] == pytest.approx(theory, rel=0.01)
    assert rmse[0.25] / rmse[0.5] == pytest.approx(math.sqrt(3), rel=0.015)
    assert rmse[0.125] / rmse[0.5] == pytest.approx(math.sqrt(7), rel=0.015)
