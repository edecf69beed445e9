"""BasicSR's paired-restoration models with DiffLoss added through ``train.diffusion_opt``."""
from collections import OrderedDict

from basicsr.losses import build_loss
from basicsr.models.esrgan_model import ESRGANModel
from basicsr.models.sr_model import SRModel
from basicsr.utils.registry import MODEL_REGISTRY
from torch import nn


class PixelAndDiffusionLoss(nn.Module):
    """Fills BasicSR's pixel-loss slot with the pixel loss (optional) plus DiffLoss, keeping each term for logging.

    BasicSR's models call ``cri_pix(output, gt)`` exactly where the restorer's output is judged, so DiffLoss joins
    every model that does so (SRModel, ESRGANModel, ...) without copying their training steps.
    """

    def __init__(self, pixel, diffusion):
        super().__init__()
        self.pixel = pixel
        self.diffusion = diffusion
        self.last_terms = OrderedDict()

    def forward(self, output, gt):
        terms = OrderedDict()
        if self.pixel is not None:
            terms['l_pix'] = self.pixel(output, gt)
        terms.update(self.diffusion.terms(output, gt))
        self.last_terms = terms
        return sum(terms.values())

    def pop_terms(self):
        terms, self.last_terms = self.last_terms, OrderedDict()
        return terms


class DiffusionConstraintMixin:
    """Adds ``train.diffusion_opt`` (a DiffLoss option dict) to a BasicSR model and logs each of its terms.

    Class attribute ``pixel_log_key``: the name under which the parent model logs its pixel loss; it is replaced by
    separate ``l_pix``, ``l_diff_eps`` and ``l_diff_h`` entries.
    """
    pixel_log_key = 'l_pix'

    def init_training_settings(self):
        super().init_training_settings()
        diffusion_opt = self.opt['train'].get('diffusion_opt')
        self.cri_diff = build_loss(diffusion_opt).to(self.device) if diffusion_opt else None
        if self.cri_diff is not None:
            self.cri_pix = PixelAndDiffusionLoss(self.cri_pix, self.cri_diff)

    def optimize_parameters(self, current_iter):
        super().optimize_parameters(current_iter)
        if self.cri_diff is None:
            return
        terms = self.cri_pix.pop_terms()
        if terms:  # empty on iterations where the model did not update the restorer (e.g. a GAN's D warm-up)
            self.log_dict.pop(self.pixel_log_key, None)
            self.log_dict.update(self.reduce_loss_dict(terms))


@MODEL_REGISTRY.register()
class DiffLossSRModel(DiffusionConstraintMixin, SRModel):
    """BasicSR's SRModel (generic paired restoration: SR, denoising, deblurring, ...) plus DiffLoss.

    Options are SRModel's, plus ``train.diffusion_opt``: a DiffLoss option dict (``type: DiffLoss``, ``prior``,
    ``eps_weight``, ``h_weight``, ...). Without it the model trains exactly as SRModel. Logged terms: ``l_pix``,
    ``l_percep``/``l_style`` when a perceptual loss is set, ``l_diff_eps`` and ``l_diff_h``.
    """


@MODEL_REGISTRY.register()
class DiffLossESRGANModel(DiffusionConstraintMixin, ESRGANModel):
    """BasicSR's ESRGANModel (``network_d``, ``gan_opt``, relativistic GAN) plus DiffLoss on generator updates.

    Options are ESRGANModel's, plus ``train.diffusion_opt`` as in DiffLossSRModel. The pixel term is logged as
    ``l_pix`` (ESRGANModel's own name is ``l_g_pix``), next to ``l_diff_eps``, ``l_diff_h``, ``l_g_gan``, ...
    """
    pixel_log_key = 'l_g_pix'
