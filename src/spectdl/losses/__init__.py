"""Training losses for SPECT networks, and the composite loss of each published study.

Every loss is an ``nn.Module`` called as ``loss(pred, target, **context)`` (context: e.g.
``lesion_mask=``, ``masks=``, ``fake_logits=``, ``real_logits=``, ``data_range=``) that returns a
scalar; ``return_components=True`` also returns its named terms, and ``loss.last_components``
keeps them from the last call. See :mod:`spectdl.losses._base` for the convention and
:func:`build_loss` for the studies' recipes.
"""

from spectdl.losses._base import Loss, batch_data_range
from spectdl.losses.adversarial import AdversarialLoss
from spectdl.losses.builder import LOSS_TYPES, STUDY_DEFAULTS, build_loss, study_defaults
from spectdl.losses.composite import CompositeLoss, DeepSupervision
from spectdl.losses.imbv import IMBVLoss
from spectdl.losses.lesion import LesionAttentionLoss
from spectdl.losses.perceptual import PerceptualLoss
from spectdl.losses.pixel import IntensityBCELoss, L1Loss, L2Loss
from spectdl.losses.sobel import SobelLoss, ThreePlaneSobelLoss, sobel_gradients
from spectdl.losses.ssim import SSIMLoss, ThreePlaneSSIMLoss, masked_ssim, three_plane_ssim

__all__ = [
    "LOSS_TYPES",
    "STUDY_DEFAULTS",
    "AdversarialLoss",
    "CompositeLoss",
    "DeepSupervision",
    "IMBVLoss",
    "IntensityBCELoss",
    "L1Loss",
    "L2Loss",
    "LesionAttentionLoss",
    "Loss",
    "PerceptualLoss",
    "SSIMLoss",
    "SobelLoss",
    "ThreePlaneSSIMLoss",
    "ThreePlaneSobelLoss",
    "batch_data_range",
    "build_loss",
    "masked_ssim",
    "sobel_gradients",
    "study_defaults",
    "three_plane_ssim",
]
