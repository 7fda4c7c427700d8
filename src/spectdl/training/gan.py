"""Adversarial training: a generator and a discriminator, alternating steps with separate optimisers."""

from __future__ import annotations

import torch

from spectdl.errors import ConfigError
from spectdl.losses import AdversarialLoss
from spectdl.training._base import SpectdlModule, build_loss_from_config
from spectdl.training.config import TrainConfig
from spectdl.training.data import split_batch
from spectdl.training.networks import build_model
from spectdl.training.optim import build_optimizer, build_scheduler


class GANModule(SpectdlModule):
    """Generator ``G = config.model`` and discriminator ``D = config.gan.discriminator``, trained
    by manual optimisation, one discriminator step then one generator step per batch.

    With ``x`` the input, ``y`` the target and ``D(x, ·)`` the discriminator on the channel
    concatenation ``[x, ·]`` (``gan.conditional``; ``D(·)`` alone otherwise):

    * discriminator step: ``L_D = w_D · adv.discriminator_loss(D(x, y), D(x, G(x)))`` with ``G(x)``
      detached, ``w_D = gan.d_loss_weight``, optimiser ``gan.optim_d``;
    * generator step: ``L_G = loss(G(x), y, fake_logits=D(x, G(x)), real_logits=D(x, y), **context)``,
      the composite loss of ``config.loss`` (its weights, e.g. ``100·L2 + 1·adversarial``), with the
      discriminator's weights frozen (``toggle_optimizer``), optimiser ``optim``.

    ``adv`` is the :class:`~spectdl.losses.AdversarialLoss` term of ``config.loss``; its mode
    (vanilla, lsgan, relativistic) serves both players. ``real_logits`` is computed without
    gradients, after the discriminator step. ``trainer.gradient_clip_val`` clips each player's
    gradient norm. Logged: ``train_loss`` (generator), ``train_d_loss`` and the components, and
    on validation ``val_loss`` (generator loss), ``val_psnr`` and ``val_ssim``.
    """

    task = "gan"

    def __init__(self, config: TrainConfig):
        super().__init__(config)
        if config.model is None or config.gan is None:
            raise ConfigError("model: the gan task needs model (the generator) and a gan section")
        self.automatic_optimization = False
        self.net = build_model(config.model)
        gan = config.gan
        defaults = {}
        g_in = getattr(self.net, "in_channels", None)
        g_out = getattr(self.net, "out_channels", None)
        if "in_channels" not in gan.discriminator.kwargs and g_in is not None and g_out is not None:
            defaults["in_channels"] = g_in + g_out if gan.conditional else g_out
        self.discriminator = build_model(gan.discriminator, path="gan.discriminator", **defaults)
        self._d_kwargs = {**defaults, **gan.discriminator.kwargs}
        self.loss = build_loss_from_config(config)
        terms = [m for m in self.loss.modules() if isinstance(m, AdversarialLoss)]
        if not terms:
            raise ConfigError(
                "loss: the gan task needs an adversarial term in the generator loss (e.g. study: "
                "myocardial_perfusion, or terms: {l2: 100, adversarial: 1}); found none"
            )
        if len({(t.mode, t.from_logits) for t in terms}) > 1:
            raise ConfigError("loss: the adversarial terms disagree on mode/from_logits; expected one flavour")
        d_logits = getattr(self.discriminator, "logits", None)
        if d_logits is not None and bool(d_logits) != terms[0].from_logits:
            raise ConfigError(
                f"gan.discriminator.kwargs.logits: {bool(d_logits)}, but the loss's adversarial term has "
                f"from_logits={terms[0].from_logits}; expected them to agree"
            )

    @property
    def adversarial(self) -> AdversarialLoss:
        return next(m for m in self.loss.modules() if isinstance(m, AdversarialLoss))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def critic(self, x: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """The discriminator's output for ``image`` (conditioned on ``x`` when ``gan.conditional``)."""
        return self.discriminator(torch.cat([x, image], dim=1) if self.config.gan.conditional else image)

    def _clip(self, optimizer) -> None:
        value = self.config.trainer.gradient_clip_val
        if value is not None:
            self.clip_gradients(optimizer, gradient_clip_val=value, gradient_clip_algorithm="norm")

    def training_step(self, batch, batch_idx: int) -> None:
        opt_g, opt_d = self.optimizers()
        x, y, context = split_batch(batch)
        adv = self.adversarial
        fake = self.net(x)

        self.toggle_optimizer(opt_d)
        loss_d = self.config.gan.d_loss_weight * adv.discriminator_loss(self.critic(x, y), self.critic(x, fake.detach()))
        self.check_finite(loss_d, x, batch_idx, what="discriminator loss")
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(loss_d)
        self._clip(opt_d)
        opt_d.step()
        self.untoggle_optimizer(opt_d)

        self.toggle_optimizer(opt_g)
        real_logits = None
        if adv.mode == "relativistic":
            with torch.no_grad():
                real_logits = self.critic(x, y)
        loss_g = self.loss(fake, y, fake_logits=self.critic(x, fake), real_logits=real_logits, **context)
        self.check_finite(loss_g, x, batch_idx, what="generator loss", loss_module=self.loss)
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(loss_g)
        self._clip(opt_g)
        opt_g.step()
        self.untoggle_optimizer(opt_g)

        b = x.shape[0]
        self.log_loss("train", loss_g, b, self.loss)
        self.log("train_d_loss", loss_d.detach(), on_step=False, on_epoch=True, batch_size=b, sync_dist=True)

    def validation_step(self, batch, batch_idx: int) -> None:
        x, y, context = split_batch(batch)
        fake = self.net(x)
        real_logits = self.critic(x, y)
        loss = self.loss(fake, y, fake_logits=self.critic(x, fake), real_logits=real_logits, **context)
        self.log_loss("val", loss, x.shape[0], self.loss)
        self.log_image_metrics(fake, y)

    def configure_optimizers(self):
        cfg = self.config
        opt_g = build_optimizer(self.net.parameters(), cfg.optim, path="optim")
        opt_d = build_optimizer(self.discriminator.parameters(), cfg.gan.optim_d, path="gan.optim_d")
        schedulers = []
        for opt, ocfg in ((opt_g, cfg.optim), (opt_d, cfg.gan.optim_d)):
            entry = build_scheduler(opt, ocfg, self.trainer.max_epochs, cfg.checkpoint.monitor, cfg.checkpoint.mode)
            if entry is not None:
                schedulers.append(entry)
        return [opt_g, opt_d], schedulers

    def extra_meta(self):
        return {"discriminator": {"name": self.config.gan.discriminator.name, "kwargs": dict(self._d_kwargs)}}
