"""The study's loss settings, each added to a pixel loss at a strength calibrated against it.

A setting's strength is the ratio of its gradient norm to the pixel loss's. Most settings are calibrated by the study
on the outputs a restorer gives early in training (Task.start_output); the ``strength_*`` settings use DiffLoss's own
``strength`` option instead, measured on the live training batches as a user's run measures it. Calibrating every
term to a stated ratio makes "a second fidelity term" and the diffusion terms comparable: a gain that MSE or a
low-pass term at the same strength also gives is not the prior's.
"""
from collections import OrderedDict

import torch.nn.functional as F

from basicsr_diffloss.losses import DiffLoss
from basicsr_diffloss.losses.gradient_scale import gradient_norms


def method(**changes):
    """DiffLoss options of a study setting, every method option named (none comes from a preset, so that a change of
    DiffLoss's defaults cannot change what a setting measures): the paper's gradient through the UNet on the eps term
    at t 200-800 with absolute weights, then ``changes``. The weights are 1 before the study's calibration scales the
    term."""
    return dict(dict(preset='default', gradient='backprop', space='eps', t_weighting='uniform', augment=False,
                     eps_weight=1.0, h_weight=0.0, t_range=(200, 800), warmup_iters=0, strength=None,
                     max_conflict=False, start_iter=0, backoff_margin=False), **changes)


def relative(multiple, update='fixed', **changes):
    """A setting whose eps weight comes from DiffLoss's own ``strength`` (measured on the live training batches over
    the first 50 applications, then ``update``), with the score-difference gradient unless ``changes`` say otherwise:
    what the package offers users."""
    return method(**dict(dict(gradient='score_difference', eps_weight=None, strength=dict(eps=multiple),
                              strength_iters=50, strength_update=update), **changes))


SCORE_DIFFERENCE = dict(gradient='score_difference')
CALIBRATION_ITER = 10**9  # the iteration the study's calibration evaluates a term at (after every warm-up)
# name: pixel loss, optional extra term, its gradient ratio to the pixel loss (the study's calibration on start
# outputs; absent where DiffLoss's own ``strength`` sets the weight), DiffLoss options for the extra, and optionally
# ``prior: split`` (the prior trained on the study's own training split, --split_prior) instead of --prior.
SETTINGS = OrderedDict([
    ('l1', dict(pixel='l1')),
    ('mse', dict(pixel='mse')),
    ('l1+mse', dict(pixel='l1', extra='mse', ratio=0.5)),
    ('l1+lowpass', dict(pixel='l1', extra='lowpass', ratio=0.5)),
    ('eps', dict(pixel='l1', extra='diffloss', ratio=0.5, diffusion=method())),
    ('eps_snr', dict(pixel='l1', extra='diffloss', ratio=0.5, diffusion=method(t_weighting='snr'))),
    ('x0', dict(pixel='l1', extra='diffloss', ratio=0.5, diffusion=method(space='x0'))),
    ('score_difference', dict(pixel='l1', extra='diffloss', ratio=1.0, diffusion=method(**SCORE_DIFFERENCE))),
    ('sd_augment', dict(pixel='l1', extra='diffloss', ratio=1.0, diffusion=method(augment=True, **SCORE_DIFFERENCE))),
    ('sd_warmup', dict(pixel='l1', extra='diffloss', ratio=1.0,
                       diffusion=method(warmup_iters=300, **SCORE_DIFFERENCE))),
    ('h', dict(pixel='l1', extra='diffloss', ratio=0.5, diffusion=method(eps_weight=0.0, h_weight=1.0))),
    ('sd+h', dict(pixel='l1', extra='diffloss', ratio=1.0, diffusion=method(h_weight=1.0, **SCORE_DIFFERENCE))),
    ('strength_0.5', dict(pixel='l1', extra='diffloss', diffusion=relative(0.5))),
    ('strength_1', dict(pixel='l1', extra='diffloss', diffusion=relative(1.0))),
    ('strength_2', dict(pixel='l1', extra='diffloss', diffusion=relative(2.0))),
    ('strength_4', dict(pixel='l1', extra='diffloss', diffusion=relative(4.0))),
    ('strength_1_tracked', dict(pixel='l1', extra='diffloss', diffusion=relative(1.0, 'tracked'))),
    ('strength_2_tracked', dict(pixel='l1', extra='diffloss', diffusion=relative(2.0, 'tracked'))),
    ('backprop_strength_1', dict(pixel='l1', extra='diffloss', diffusion=relative(1.0, gradient='backprop'))),
    ('strength_2_split_prior', dict(pixel='l1', extra='diffloss', diffusion=relative(2.0), prior='split')),
    # the conflict guard (max_conflict): on each of the restorer's weights the terms' momentum opposes the pixel
    # loss's by at most this share of it
    ('strength_2_guard_0.1', dict(pixel='l1', extra='diffloss', diffusion=relative(2.0, max_conflict=0.1))),
    ('strength_2_guard_0', dict(pixel='l1', extra='diffloss', diffusion=relative(2.0, max_conflict=0.0))),
    # the default (strength 2, max_conflict 0) with one thing changed: its strength, the t range, the space, an h term
    ('strength_1_guard_0', dict(pixel='l1', extra='diffloss', diffusion=relative(1.0, max_conflict=0.0))),
    ('strength_4_guard_0', dict(pixel='l1', extra='diffloss', diffusion=relative(4.0, max_conflict=0.0))),
    ('strength_2_guard_0_t20_200', dict(pixel='l1', extra='diffloss',
                                        diffusion=relative(2.0, max_conflict=0.0, t_range=(20, 200)))),
    ('strength_2_guard_0_x0', dict(pixel='l1', extra='diffloss', diffusion=relative(2.0, max_conflict=0.0, space='x0'))),
    ('strength_2_h_1_guard_0', dict(pixel='l1', extra='diffloss',
                                    diffusion=relative(2.0, max_conflict=0.0, h_weight=None,
                                                       strength=dict(eps=2.0, h=1.0)))),
    # the default since issue 34: the same, joining after 40% of the run and backing off if the pixel loss rises
    ('strength_2_guard_0_late', dict(pixel='l1', extra='diffloss',
                                     diffusion=relative(2.0, max_conflict=0.0, start_iter='auto', backoff_margin=0.1))),
    # the authors' setting (DiffLoss's preset 'paper'): absolute weights, no calibration, the whole t range (t_range
    # None falls back to the preset's, so the preset is named; a test checks it equals what `preset: paper` runs)
    ('paper', dict(pixel='l1', extra='diffloss', diffusion=method(preset='paper', eps_weight=1e-3, h_weight=1e-6,
                                                                 t_range=None))),
])


def low_pass_l1(output, gt, factor=4):
    """L1 between 4x4 average-pooled images: a second fidelity term that only sees low frequencies."""
    return F.l1_loss(F.avg_pool2d(output, factor), F.avg_pool2d(gt, factor))


PIXEL_LOSSES = {'l1': F.l1_loss, 'mse': F.mse_loss}


class StudyLoss:
    """The pixel loss of a setting plus its extra term at a calibrated weight; ``terms`` returns both for logging.

    Args:
        setting (dict): an entry of ``SETTINGS``.
        prior (DiffusionPrior | None): the prior for DiffLoss settings.
        seed (int): DiffLoss's generator seed.
        t_range (list | None): overrides the setting's t range.
        crop_size (int | None): DiffLoss ``crop_size`` (the study uses the size the prior was trained on).
        total_iter (int | None): the run's length, for a setting with ``start_iter: auto``.
    """

    def __init__(self, setting, prior=None, seed=0, t_range=None, crop_size=None, total_iter=None):
        self.pixel = PIXEL_LOSSES[setting['pixel']]
        self.kind = setting.get('extra')
        self.ratio = setting.get('ratio')
        self.weight = 1.0
        self.relative = self.kind == 'diffloss' and setting['diffusion'].get('strength') is not None
        self.diffloss = None
        if self.kind == 'diffloss':
            options = dict(setting['diffusion'], crop_size=crop_size)
            if t_range is not None:
                options['t_range'] = t_range
            self.diffloss = DiffLoss(prior=prior, seed=seed, **options)
            if total_iter is not None:
                self.diffloss.set_training_length(total_iter)
        self.seed = seed

    def _extra(self, output, gt, current_iter=None, reference=None, parameters=None):
        if self.kind == 'mse':
            return F.mse_loss(output, gt)
        if self.kind == 'lowpass':
            return low_pass_l1(output, gt)
        terms = self.diffloss.terms(output, gt, current_iter, reference, parameters)
        return sum(terms.values()) if terms else output.new_zeros(())  # none before start_iter

    def calibrate(self, batches, task):
        """Set the extra term's weight so that its gradient norm is ``ratio`` times the pixel loss's, averaged over
        ``batches`` of start outputs; returns the weight (None where DiffLoss's ``strength`` sets it in training)."""
        if self.kind is None:
            return 0.0
        if self.relative or self.ratio is None:  # DiffLoss's strength, or absolute weights (the paper's)
            return None
        pixel_norm, extra_norm = 0.0, 0.0
        for lq, gt in batches:
            output = task.start_output(lq, gt.shape).requires_grad_(True)
            # the term at full scale: past any warm-up of its schedule (at its first call a warm-up would scale it
            # down and the weight up)
            extra = self._extra(output, gt, current_iter=CALIBRATION_ITER)
            norms = gradient_norms(dict(pixel=self.pixel(output, gt), extra=extra), output)
            pixel_norm, extra_norm = pixel_norm + norms['pixel'], extra_norm + norms['extra']
        self.weight = self.ratio * pixel_norm / extra_norm
        if self.diffloss is not None:
            self.diffloss.manual_seed(self.seed)  # training draws do not depend on the calibration's
        return self.weight

    def terms(self, output, gt, current_iter, parameters=None):
        """``{'l_pix': ..., 'l_extra': ...}`` (the extra term weighted), for the sum and the log. ``parameters``: the
        restorer's, where DiffLoss's conflict guard measures (as in a model's training step)."""
        pixel = self.pixel(output, gt)
        if self.relative:  # weight 1: as a model's step, the pixel loss comes back carrying its gradient
            terms = self.diffloss.terms(output, gt, current_iter, reference=pixel, parameters=parameters,
                                        reference_name='l_pix')
            extra = [value for name, value in terms.items() if name != 'l_pix']
            return OrderedDict(l_pix=terms['l_pix'], l_extra=sum(extra) if extra else output.new_zeros(()))
        terms = OrderedDict(l_pix=pixel)
        if self.kind is not None:
            terms['l_extra'] = self.weight * self._extra(output, gt, current_iter, reference=pixel,
                                                         parameters=parameters)
        return terms

    @property
    def strength_weights(self):
        """The weights DiffLoss's ``strength`` measured (``{term: weight}``), for the run record; None otherwise."""
        return self.diffloss.strength.weights if self.relative else None
