import pytest
import torch

from spectdl.errors import InputError
from spectdl.geometry import Collimator, Orbit, VoxelGrid
from spectdl.physics import SpectProjector
from spectdl.recon import mlem
from spectdl.recon.pvc import iterative_yang, template_means

GRID = VoxelGrid((64, 64), 4.0)
# Blood-pool (RBC) concentrations: myocardium = IMBV × blood, background, liver.
ACT = torch.tensor([0.0, 0.18, 1.0, 0.05, 0.35], dtype=torch.float64)


def _labels(dx=0.0):
    x = (torch.arange(64, dtype=torch.float64) - 31.5) * 4.0
    X, Y = torch.meshgrid(x, x, indexing="ij")
    lab = torch.zeros(64, 64, dtype=torch.long)
    lab[(X / 110) ** 2 + (Y / 90) ** 2 <= 1] = 3
    lab[(((X + 50) / 35) ** 2 + ((Y + 30) / 30) ** 2 <= 1) & (lab == 3)] = 4
    r = torch.sqrt((X - 25 - dx) ** 2 + (Y - 10) ** 2)
    lab[r <= 27] = 1  # myocardium: a ring 10 mm thick (2.5 voxels) round the blood pool
    lab[r <= 17] = 2
    return lab[None, None]


@pytest.fixture(scope="module")
def system():
    return SpectProjector(GRID, Orbit.circular(60, 200.0), Collimator.preset("LEHR"))


@pytest.fixture(scope="module")
def case(system):
    lab = _labels()
    act = ACT[lab]
    return lab, act, mlem(system.A(act), system, 40)


def test_iterative_yang_recovers_piecewise_constant_means(system, case):
    lab, act, image = case
    truth = template_means(act, lab)[0, 1:]
    before = template_means(image, lab)[0, 1:]
    out, rec = iterative_yang(image, lab, system, recon_iterations=40, pvc_iterations=10)
    after = template_means(out, lab)[0, 1:]
    assert float(before[0] / truth[0]) > 1.2  # MLEM: the blood pool spills into the thin wall (+28 % here)
    torch.testing.assert_close(after, truth, rtol=0.02, atol=0)  # measured: within 0.01 % of every region
    imbv = float(after[0] / after[1])
    assert imbv == pytest.approx(0.18, rel=0.02)
    assert rec["means"].shape == (10, 1, 5)


def test_shifted_templates_bias_the_correction(system, case):
    from spectdl.recon.pvc import misregister_templates

    lab, act, image = case
    errors = []
    for d in (0, 1, 2):  # the template map (the CT) moved off the emission image by 0, 1, 2 voxels
        out, _ = iterative_yang(image, misregister_templates(lab, shift_vox=(d, 0)), system, recon_iterations=40,
                                pvc_iterations=5)
        m = template_means(out, lab)[0]  # scored on the true regions
        errors.append(abs(float(m[1] / m[2]) - 0.18))
    assert errors[0] < errors[1] < errors[2] and errors[2] > 5 * errors[0] and errors[2] > 0.01


def test_no_nan_no_negatives_and_independent_of_the_batch(system):
    g = torch.Generator().manual_seed(0)
    labs = torch.cat([_labels(), _labels(dx=-12.0)])
    labs[1][labs[1] == 4] = 3  # the second sample has no liver template: an absent label
    y = torch.poisson(system.A(ACT[labs]) * 50, generator=g)
    images = mlem(y, system, 10)
    images[0, 0, :8] = 0  # empty rows: T_recon is zero there
    out, _ = iterative_yang(images, labs, system, recon_iterations=10, pvc_iterations=3)
    assert torch.isfinite(out).all() and bool((out >= 0).all())
    for b in range(2):
        alone, _ = iterative_yang(images[b:b + 1], labs[b:b + 1], system, recon_iterations=10, pvc_iterations=3)
        torch.testing.assert_close(alone, out[b:b + 1], rtol=1e-5, atol=1e-6)


def test_bad_templates_are_refused(system, case):
    lab, _, image = case
    with pytest.raises(InputError, match="integer labels"):
        iterative_yang(image, lab.float(), system, recon_iterations=2)
    with pytest.raises(InputError, match="shape"):
        iterative_yang(image, lab[..., :10], system, recon_iterations=2)


def test_misregistered_templates_are_shifted_or_grown_labels():
    from scipy import ndimage

    from spectdl.recon.pvc import misregister_templates

    lab = _labels()
    shifted = misregister_templates(lab, shift_vox=(2, 0))
    # Moving the map by 2 voxels along x moves the ring's centre by 2 voxels (8 mm).
    assert torch.equal(shifted[0, 0, 2:], lab[0, 0, :-2]) and torch.equal(shifted[0, 0, :2], lab[0, 0, :1].expand(2, -1))
    ring = lambda t: (t[0, 0] == 1).to(torch.float64)  # noqa: E731
    centre = lambda t: float((ring(t) * torch.arange(64)[:, None]).sum() / ring(t).sum())  # noqa: E731
    assert centre(shifted) - centre(lab) == pytest.approx(2.0, abs=1e-9)
    grown = misregister_templates(lab, dilate={1: 1})
    expect = ndimage.binary_dilation((lab[0, 0] == 1).numpy(), structure=torch.ones(3, 3).bool().numpy())
    assert torch.equal(grown[0, 0] == 1, torch.from_numpy(expect))
    assert bool(((grown != lab) <= (grown == 1)).all())  # only the grown label changed voxels
    with pytest.raises(InputError, match="shift_vox"):
        misregister_templates(lab, shift_vox=(1,))

