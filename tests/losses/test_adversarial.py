import numpy as np
import pytest
import torch
from scipy.special import expit, log_expit

from spectdl.errors import InputError
from spectdl.losses import AdversarialLoss


def _logits(seed=0):
    g = torch.Generator().manual_seed(seed)
    real = torch.randn(3, 1, 4, 4, generator=g, dtype=torch.float64) + 1.0
    fake = torch.randn(3, 1, 4, 4, generator=g, dtype=torch.float64) - 0.5
    return real, fake


def _reference(mode, r, f):
    """(generator, discriminator) losses from the published equations, in numpy."""
    if mode == "vanilla":
        return -log_expit(f).mean(), -log_expit(r).mean() - log_expit(-f).mean()
    if mode == "lsgan":
        return ((f - 1) ** 2).mean(), ((r - 1) ** 2).mean() + (f**2).mean()
    d_rf, d_fr = r - f.mean(), f - r.mean()  # relativistic average logits
    gen = -log_expit(d_fr).mean() - log_expit(-d_rf).mean()
    disc = -log_expit(d_rf).mean() - log_expit(-d_fr).mean()
    return gen, disc


@pytest.mark.parametrize("mode", ["vanilla", "lsgan", "relativistic"])
def test_losses_match_the_published_equations(mode):
    r, f = _logits()
    gen, disc = _reference(mode, r.numpy(), f.numpy())
    loss = AdversarialLoss(mode)
    assert float(loss.generator_loss(f, r)) == pytest.approx(gen, rel=1e-12)
    assert float(loss.discriminator_loss(r, f)) == pytest.approx(disc, rel=1e-12)
    # As a composite term: pred and target are unused, the logits come in the context.
    assert float(loss(None, None, fake_logits=f, real_logits=r)) == pytest.approx(gen, rel=1e-12)


@pytest.mark.parametrize("mode", ["vanilla", "relativistic"])
def test_probabilities_give_the_same_losses_as_logits(mode):
    r, f = _logits(1)
    on_logits = AdversarialLoss(mode, from_logits=True)
    on_probs = AdversarialLoss(mode, from_logits=False)
    pr, pf = torch.sigmoid(r), torch.sigmoid(f)
    np.testing.assert_allclose(pf.numpy(), expit(f.numpy()))
    assert float(on_probs.generator_loss(pf, pr)) == pytest.approx(float(on_logits.generator_loss(f, r)), rel=1e-8)
    assert float(on_probs.discriminator_loss(pr, pf)) == pytest.approx(float(on_logits.discriminator_loss(r, f)), rel=1e-8)


def test_lsgan_compares_the_output_itself_with_its_targets():
    r, f = _logits(2)
    pr, pf = torch.sigmoid(r), torch.sigmoid(f)
    loss = AdversarialLoss("lsgan", from_logits=False)
    assert float(loss.generator_loss(pf)) == pytest.approx(((pf.numpy() - 1) ** 2).mean(), rel=1e-12)
    assert float(loss.discriminator_loss(pr, pf)) == pytest.approx(
        ((pr.numpy() - 1) ** 2).mean() + (pf.numpy() ** 2).mean(), rel=1e-12
    )


@pytest.mark.parametrize("mode", ["vanilla", "lsgan", "relativistic"])
def test_minima_and_gradients(mode):
    loss = AdversarialLoss(mode)
    big = torch.full((2, 1, 3, 3), 30.0, dtype=torch.float64)
    # A generator that fools the discriminator completely has (near) zero loss, and so does a
    # discriminator that separates perfectly (LSGAN: at outputs exactly 1 and 0).
    fooled_real, fooled_fake = (-big, big) if mode == "relativistic" else (big, big)
    hi, lo = (torch.ones_like(big), torch.zeros_like(big)) if mode == "lsgan" else (big, -big)
    if mode == "lsgan":
        fooled_fake = torch.ones_like(big)
    assert float(loss.generator_loss(fooled_fake, fooled_real)) == pytest.approx(0.0, abs=1e-10)
    assert float(loss.discriminator_loss(hi, lo)) == pytest.approx(0.0, abs=1e-10)
    r, f = _logits(3)
    r.requires_grad_(True)
    f.requires_grad_(True)
    d_loss = loss.discriminator_loss(r, f)
    d_loss.backward()
    assert bool(torch.isfinite(r.grad).all()) and bool(torch.isfinite(f.grad).all())
    with torch.no_grad():  # a small descent step helps the discriminator
        assert float(loss.discriminator_loss(r - 1e-3 * r.grad, f - 1e-3 * f.grad)) < float(d_loss)
    if mode != "lsgan":  # BCE-based: D raises real scores and lowers fake ones everywhere
        assert float(r.grad.max()) < 0 < float(f.grad.min())
    else:
        torch.testing.assert_close(f.grad, 2 * f.detach() / f.numel())
    f.grad = None
    loss.generator_loss(f, r.detach()).backward()
    assert bool(torch.isfinite(f.grad).all()) and float(f.grad.sum()) < 0  # G raises the fake score


def test_bad_arguments_raise():
    r, f = _logits()
    with pytest.raises(InputError, match="mode"):
        AdversarialLoss("wgan")
    with pytest.raises(InputError, match="real_logits"):
        AdversarialLoss("relativistic").generator_loss(f)
    with pytest.raises(InputError, match="fake_logits"):
        AdversarialLoss()(r, r)
