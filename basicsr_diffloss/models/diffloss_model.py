"""BasicSR's paired-restoration models with DiffLoss added through ``train.diffusion_opt``."""
from collections import OrderedDict

from basicsr.losses import build_loss
from basicsr.models.esrgan_model import ESRGANModel
from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger
from basicsr.utils.registry import MODEL_REGISTRY
from torch import nn

from ..losses.diffloss_loss import NonFiniteInputError
from .reliable_training import ReliableTrainingMixin
from .validation import ValidationMixin

# Keys under which BasicSR-style archs name their output (or, for same-size restorers, input) channels.
CHANNEL_KEYS = ('num_out_ch', 'out_chans', 'out_nc', 'out_channels', 'img_channel', 'in_chans', 'num_in_ch')


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
        self.current_iter = None  # set by the model before each step, for DiffLoss's application schedule

    def forward(self, output, gt):
        terms = OrderedDict()
        if self.pixel is not None:
            terms['l_pix'] = self.pixel(output, gt)
        terms.update(self.diffusion.terms(output, gt, self.current_iter))
        self.last_terms = terms
        if not terms:  # no pixel loss and an iteration the diffusion schedule skips: a zero that keeps the graph
            return output.sum() * 0
        return sum(terms.values())

    def pop_terms(self):
        terms, self.last_terms = self.last_terms, OrderedDict()
        return terms


class DiffusionConstraintMixin:
    """Adds ``train.diffusion_opt`` (a DiffLoss option dict) to a BasicSR model and logs each of its terms.

    At start-up it checks the prior against the restorer's channels (``network_g``) and ``crop_size`` against the
    training patch (``datasets.train.gt_size``). A step whose output or GT holds NaN/Inf raises an error naming the
    iteration, or is skipped with a warning when DiffLoss has ``nonfinite: skip`` (counted in ``skipped_steps``).

    Class attribute ``pixel_log_key``: the name under which the parent model logs its pixel loss; it is replaced by
    separate ``l_pix``, ``l_diff_eps`` and ``l_diff_h`` entries.
    """
    pixel_log_key = 'l_pix'

    def init_training_settings(self):
        super().init_training_settings()
        diffusion_opt = self.opt['train'].get('diffusion_opt')
        self.cri_diff = build_loss(diffusion_opt).to(self.device) if diffusion_opt else None
        self.skipped_steps = 0
        if self.cri_diff is not None:
            self._check_diffusion_options()
            self.cri_pix = PixelAndDiffusionLoss(self.cri_pix, self.cri_diff)

    def _check_diffusion_options(self):
        prior_channels = self.cri_diff.prior.in_channels
        channels = next((self.opt['network_g'][key] for key in CHANNEL_KEYS if key in self.opt['network_g']), None)
        if channels is not None and channels != prior_channels and channels != 1:
            raise ValueError(f'train.diffusion_opt.prior: the prior takes {prior_channels}-channel images but '
                             f"network_g ({self.opt['network_g']['type']}) outputs {channels}; use a prior trained "
                             f'on {channels}-channel images.')
        gt_size = self.opt.get('datasets', {}).get('train', {}).get('gt_size')
        crop_size = self.cri_diff.crop_size
        if crop_size is not None and gt_size is not None and crop_size > gt_size:
            raise ValueError(f'train.diffusion_opt.crop_size: {crop_size} is larger than the training patch '
                             f'datasets.train.gt_size {gt_size}; use at most {gt_size}.')

    def optimize_parameters(self, current_iter):
        if self.cri_diff is not None:
            self.cri_pix.current_iter = current_iter
        try:
            super().optimize_parameters(current_iter)
        except NonFiniteInputError as error:
            if self.cri_diff.nonfinite != 'skip':
                raise NonFiniteInputError(f'Iteration {current_iter}: {error}') from error
            for optimizer in self.optimizers:
                optimizer.zero_grad()
            self.cri_pix.pop_terms()
            self.skipped_steps += 1
            get_root_logger().warning(f'Iteration {current_iter}: skipped, output or GT holds NaN or Inf '
                                      f'({self.skipped_steps} steps skipped so far).')
            self.log_dict = OrderedDict(skipped_steps=float(self.skipped_steps))
            return
        if self.cri_diff is None:
            return
        terms = self.cri_pix.pop_terms()
        if terms:  # empty on iterations where the model did not update the restorer (e.g. a GAN's D warm-up)
            self.log_dict.pop(self.pixel_log_key, None)
            self.log_dict.update(self.reduce_loss_dict(terms))


@MODEL_REGISTRY.register()
class DiffLossSRModel(ValidationMixin, DiffusionConstraintMixin, ReliableTrainingMixin, SRModel):
    """BasicSR's SRModel (generic paired restoration: SR, denoising, deblurring, ...) plus DiffLoss.

    Options are SRModel's, plus ``train.diffusion_opt``: a DiffLoss option dict (``type: DiffLoss``, ``prior``,
    ``eps_weight``, ``h_weight``, ...). Without it the model trains as SRModel. Logged terms: ``l_pix``,
    ``l_percep``/``l_style`` when a perceptual loss is set, ``l_diff_eps`` and ``l_diff_h``. Checkpoints are
    atomic and resumes exact (ReliableTrainingMixin).

    Validation (ValidationMixin): ``val.metrics`` is checked when the model is built (missing LPIPS/DISTS weights
    fail here, before training); a metric that cannot be computed on an image (NaN, e.g. NIQE below 192 px) is left
    out of that metric's mean and the log says on how many images it was computed; and
    ``val.prior_diagnostics: {timesteps: [100, 400, 700], every: 1, max_images: 4, crop_size: 256, seed: 0}``
    (defaults shown; off when absent) draws, for each of the first ``max_images`` validation images, the prior's
    x0 estimates from the noised output and from the noised GT into
    ``experiments/<name>/visualization/prior/<dataset>/<image>_<iter>.png`` (see PriorDiagnostics).
    """


@MODEL_REGISTRY.register()
class DiffLossESRGANModel(ValidationMixin, DiffusionConstraintMixin, ReliableTrainingMixin, ESRGANModel):
    """BasicSR's ESRGANModel (``network_d``, ``gan_opt``, relativistic GAN) plus DiffLoss on generator updates.

    Options are ESRGANModel's, plus ``train.diffusion_opt``, ``val.metrics`` and ``val.prior_diagnostics`` as in
    DiffLossSRModel. The pixel term is logged as
    ``l_pix`` (ESRGANModel's own name is ``l_g_pix``), next to ``l_diff_eps``, ``l_diff_h``, ``l_g_gan``, ...
    """
    pixel_log_key = 'l_g_pix'
