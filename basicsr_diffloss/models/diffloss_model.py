"""BasicSR's paired-restoration models with DiffLoss added through ``train.diffusion_opt``."""
from collections import OrderedDict

import torch
from basicsr.losses import build_loss
from basicsr.models.esrgan_model import ESRGANModel
from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger
from basicsr.utils.registry import MODEL_REGISTRY
from torch import nn

from ..losses.diffloss_loss import NonFiniteInputError
from .exact_resume import ReliableTrainingMixin
from .validation import ValidationMixin

# Keys under which BasicSR-style archs name their output (or, for same-size restorers, input) channels.
CHANNEL_KEYS = ('num_out_ch', 'out_chans', 'out_nc', 'out_channels', 'img_channel', 'in_chans', 'num_in_ch')


class PixelAndDiffusionLoss(nn.Module):
    """Fills BasicSR's pixel-loss slot with the pixel loss (optional) plus DiffLoss, keeping each term for logging.

    BasicSR's models call ``cri_pix(output, gt)`` exactly where the restorer's output is judged, so DiffLoss joins
    every model that does so (SRModel, ESRGANModel, SwinIRModel, RealESRNetModel, RealESRGANModel, ...) without
    copying their training steps. ``last_total`` is the tensor the last call returned: the model logs it under its
    own pixel key, which is how DiffusionConstraintMixin finds that key.
    """

    def __init__(self, pixel, diffusion, parameters=None):
        super().__init__()
        self.pixel = pixel
        self.diffusion = diffusion
        self.parameters_judged = parameters  # the restorer's trainable parameters, where DiffLoss's guard projects
        self.last_terms = OrderedDict()
        self.last_total = None
        self.current_iter = None  # set by the model before each step, for DiffLoss's application schedule

    def forward(self, output, gt):
        pixel = self.pixel(output, gt) if self.pixel is not None else None
        # the pixel term comes back first, as 'l_pix'; under the conflict guard it carries its gradient on the
        # restorer's weights through the diffusion term, which saves a backward pass of the restorer
        terms = self.diffusion.terms(output, gt, self.current_iter, reference=pixel, parameters=self.parameters_judged,
                                     reference_name='l_pix')
        self.last_terms = terms
        if not terms:  # no pixel loss and an iteration the diffusion schedule skips: a zero that keeps the graph
            self.last_total = output.sum() * 0
        else:
            self.last_total = sum(terms.values())
        return self.last_total

    def pop_terms(self):
        """The terms of the last call and the total it returned; both are forgotten."""
        terms, total = self.last_terms, self.last_total
        self.last_terms, self.last_total = OrderedDict(), None
        return terms, total


def split_pixel_entry(loss_dict, terms, total):
    """``loss_dict`` with the entry holding ``total`` (the tensor ``cri_pix`` returned) replaced by ``terms``.

    The pixel term keeps the model's key (``l_pix``, ``l_g_pix``, ...); the diffusion terms follow it. When no entry
    holds ``total`` (a model that logs a sum of several calls), the diffusion terms are appended.
    """
    key = next((name for name, value in loss_dict.items() if value is total), None)
    split = OrderedDict()
    for name, value in loss_dict.items():
        if name != key:
            split[name] = value
            continue
        for term, term_value in terms.items():
            split[name if term == 'l_pix' else term] = term_value
    if key is None:
        split.update((term, value) for term, value in terms.items() if term != 'l_pix')
    return split


class DiffusionConstraintMixin:
    """Adds ``train.diffusion_opt`` (a DiffLoss option dict) to a BasicSR model and logs each of its terms.

    At start-up it checks that the model has a ``cri_pix`` slot, the prior against the restorer's channels
    (``network_g``) and ``crop_size`` against the training patch (top-level ``gt_size`` for models that crop
    themselves, as Real-ESRGAN's do, else ``datasets.train.gt_size``). A step whose output or GT holds NaN/Inf raises
    an error naming the iteration, or is skipped with a warning when DiffLoss has ``nonfinite: skip`` (counted in
    ``skipped_steps``).

    Logging: the model logs what ``cri_pix`` returned under its own key (``l_pix`` for SRModel, ``l_g_pix`` for the
    GAN models); that entry is found by identity when the model reduces its loss dict and replaced, in place, by the
    pixel term under the same key followed by ``l_diff_eps`` (``l_diff_x0`` with ``space: x0``) and ``l_diff_h`` (the
    entries DiffLoss computed), then the conflict guard's ``conflict_diff``, ``cos_diff`` and ``kept_diff``; on steps
    that skip the term none of these follow the pixel term.
    """

    def init_training_settings(self):
        super().init_training_settings()
        diffusion_opt = self.opt['train'].get('diffusion_opt')
        self.cri_diff = None
        self.skipped_steps = 0
        if not diffusion_opt:
            return
        if not hasattr(self, 'cri_pix'):
            model_type = self.opt.get('model_type', type(self).__name__)
            raise TypeError(f'train.diffusion_opt: model_type {model_type} has no cri_pix slot after '
                            'init_training_settings (the pixel loss through which BasicSR models judge the '
                            "restorer's output), so DiffLoss has nowhere to join its training step. Use a model "
                            'that builds cri_pix from train.pixel_opt (SRModel, ESRGANModel, SwinIRModel, '
                            'RealESRNetModel, RealESRGANModel, ...) or remove train.diffusion_opt.')
        self.cri_diff = build_loss(diffusion_opt).to(self.device)
        if self.opt['train'].get('total_iter'):  # BasicSR's training requires it; start_iter auto reads it
            self.cri_diff.set_training_length(self.opt['train']['total_iter'])
        self._check_diffusion_options()
        self.cri_pix = PixelAndDiffusionLoss(self.cri_pix, self.cri_diff,
                                             [param for param in self.net_g.parameters() if param.requires_grad])

    def _check_diffusion_options(self):
        prior_channels = self.cri_diff.prior.in_channels
        channels = next((self.opt['network_g'][key] for key in CHANNEL_KEYS if key in self.opt['network_g']), None)
        if channels is not None and channels != prior_channels and channels != 1:
            raise ValueError(f'train.diffusion_opt.prior: the prior takes {prior_channels}-channel images but '
                             f"network_g ({self.opt['network_g']['type']}) outputs {channels}; use a prior trained "
                             f'on {channels}-channel images.')
        where, gt_size = 'gt_size', self.opt.get('gt_size')  # Real-ESRGAN's models crop the patch themselves
        if gt_size is None:
            where, gt_size = 'datasets.train.gt_size', (self.opt.get('datasets') or {}).get('train', {}).get('gt_size')
        crop_size = self.cri_diff.crop_size
        if crop_size is not None and gt_size is not None and crop_size > gt_size:
            raise ValueError(f'train.diffusion_opt.crop_size: {crop_size} is larger than the training patch '
                             f'{where} {gt_size}; use at most {gt_size}.')

    def reduce_loss_dict(self, loss_dict):
        """The model's loss dict with what ``cri_pix`` returned split into its terms, then reduced as BasicSR does."""
        if getattr(self, 'cri_diff', None) is not None:
            terms, total = self.cri_pix.pop_terms()
            if terms:
                loss_dict = split_pixel_entry(loss_dict, terms, total)
            if self.cri_diff.guard is not None and any(name.startswith('l_diff') for name in terms):
                # conflict_diff, cos_diff, kept_diff of this step; absent on steps that skip the term
                loss_dict.update((name, torch.tensor(value, device=self.device))
                                 for name, value in self.cri_diff.guard.last.items())
        return super().reduce_loss_dict(loss_dict)

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


@MODEL_REGISTRY.register()
class DiffLossSRModel(ValidationMixin, DiffusionConstraintMixin, ReliableTrainingMixin, SRModel):
    """BasicSR's SRModel (generic paired restoration: SR, denoising, deblurring, ...) plus DiffLoss.

    Options are SRModel's, plus ``train.diffusion_opt``: a DiffLoss option dict (``type: DiffLoss``, ``prior``,
    ``eps_weight``, ``h_weight``, ...). Without it the model trains as SRModel. Logged terms: ``l_pix``,
    ``l_percep``/``l_style`` when a perceptual loss is set, ``l_diff_eps`` (or ``l_diff_x0``), ``l_diff_h`` and the
    guard's ``conflict_diff``, ``cos_diff``, ``kept_diff`` (DiffusionConstraintMixin). Checkpoints are
    atomic and resumes exact (ReliableTrainingMixin).

    Validation (ValidationMixin): ``val.metrics`` is checked when the model is built (missing LPIPS/DISTS weights
    fail here, before training); a metric that cannot be computed on an image (NaN, e.g. NIQE below 192 px) is left
    out of that metric's mean and the log says on how many images it was computed; and
    ``val.prior_diagnostics: {timesteps: [100, 400, 700], every: 1, max_images: 4, crop_size: 256, seed: 0}``
    (defaults shown; off when absent) draws, for each of the first ``max_images`` validation images, the prior's
    x0 estimates from the noised output and from the noised GT into
    ``experiments/<name>/visualization/prior/<dataset>/<image>_<iter>.png`` (see PriorDiagnostics).

    It is what ``model_type: SRModel`` with a ``train.diffusion_opt`` builds (see with_diffloss.py).
    """


@MODEL_REGISTRY.register()
class DiffLossESRGANModel(ValidationMixin, DiffusionConstraintMixin, ReliableTrainingMixin, ESRGANModel):
    """BasicSR's ESRGANModel (``network_d``, ``gan_opt``, relativistic GAN) plus DiffLoss on generator updates.

    Options are ESRGANModel's, plus ``train.diffusion_opt``, ``val.metrics`` and ``val.prior_diagnostics`` as in
    DiffLossSRModel. The pixel term is logged under ESRGANModel's own name ``l_g_pix``, followed by ``l_diff_eps``,
    ``l_diff_h``, then ``l_g_percep``, ``l_g_gan``, ... It is what ``model_type: ESRGANModel`` with a
    ``train.diffusion_opt`` builds (see with_diffloss.py).
    """
