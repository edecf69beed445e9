"""DiffLoss: a frozen diffusion prior used as a training constraint (Tan & Zhao, arXiv 2406.19030)."""
from collections import OrderedDict

import torch
import torch.distributed as dist
import torch.nn.functional as F
from basicsr.archs import build_network
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn

from ..options import OptionError, choice, flag, number, number_or_range, option_error
from .application_schedule import ApplicationSchedule
from .relative_strength import RelativeStrength

# Named settings of the method options (t_range None: the whole schedule; strength: the terms whose weights are
# multiples of the pixel loss's gradient, measured in training). 'default' is the study's choice (docs/study.md): the
# best x4 SR setting (PSNR, HaarPSI) that does not raise NIQE beyond its standard error against L1, the eps term with
# the score-difference gradient at t 200-800 and 2x L1's gradient; as a multiple it needs no calibration for another
# prior. 'backprop' is the paper's gradient through the UNet at 1x. 'paper' is the authors' setting; their released
# code ran both UNet calls under torch.no_grad(), so these weights never sent a gradient and nobody tuned them.
PAPER = dict(eps_weight=1e-3, h_weight=1e-6, t_range=None, space='eps', gradient='backprop', t_weighting='uniform',
             strength=None)
DEFAULT = dict(PAPER, eps_weight=None, h_weight=0.0, t_range=(200, 800), gradient='score_difference',
               strength=dict(eps=2.0))
PRESETS = {'default': DEFAULT, 'backprop': dict(DEFAULT, gradient='backprop', strength=dict(eps=1.0)),
           'paper': PAPER}
# How the prior runs is the prior's business: these options moved from DiffLoss to DiffusionPrior.
PRIOR_EXECUTION_OPTIONS = ('dtype', 'channels_last', 'gradient_checkpointing', 'compile')
OUT_OF_RANGE_MODES = ('clamp', 'error')
NONFINITE_MODES = ('error', 'skip')
SPACES = ('eps', 'x0')
GRADIENT_MODES = ('backprop', 'score_difference')
T_WEIGHTINGS = ('uniform', 'snr')


class NonFiniteInputError(FloatingPointError):
    """pred or target holds NaN or Inf. Raised on every rank at once, so that all ranks can skip the step together."""


@LOSS_REGISTRY.register()
class DiffLoss(nn.Module):
    """Diffusion-prior constraint between a restored image and its ground truth.

    Both images are mapped to [-1, 1], noised to the same timestep t with the same noise, and passed through a frozen
    diffusion UNet. The loss compares the UNet's noise predictions (``eps`` term, "naturalness") and its middle-block
    features (``h`` term, "semantics"). The ground-truth branch runs without gradient; the restored branch keeps its
    graph, so the gradient reaches the restorer *through* the UNet (the authors' released code lost it under
    ``torch.no_grad()``).

    Args:
        prior (dict | nn.Module): DiffusionPrior options, e.g. ``{type: DiffusionPrior, pretrained: DIR}``, or a
            built prior (to share one between losses).
        preset (str): where ``eps_weight``, ``h_weight``, ``t_range``, ``space``, ``gradient``, ``t_weighting`` and
            ``strength`` come from when not given. ``default`` (the eps weight from ``strength: {eps: 2.0}``, h 0,
            [200, 800], eps, score_difference, uniform: the study's choice, docs/study.md); ``backprop`` (the same
            with the paper's gradient through the UNet, ``strength: {eps: 1.0}``); ``paper`` (1e-3, 1e-6, the whole
            schedule, eps, backprop, uniform, no strength). A preset's strength applies to the terms given no
            absolute weight: ``eps_weight: 3.5`` under ``default`` is an absolute eps weight, ``h_weight: 0.5`` adds
            an absolute h term beside the preset's relative eps. Default: ``default``.
        loss_weight (float): multiplies every term. Default: 1.0.
        eps_weight (float): weight of ``mean((eps(y_t) - eps(x_t))^2)``. Default: the preset's (for ``default`` and
            ``backprop``: set by their ``strength``).
        h_weight (float): weight of ``mean((h(y_t) - h(x_t))^2)``. Default: the preset's.
        t_range (list[int]): ``[low, high]``, both inclusive; t is drawn uniformly from it, one per image and draw.
            Default: the preset's.
        num_samples (int): noise and timestep draws per image, averaged. Default: 1.
        crop_size (int | None): compare the same random ``crop_size`` square of both images (clipped to the image);
            must be a multiple of the prior's size factor (2^(levels-1)). Default: None, the whole image. Images whose
            sides are not multiples of the factor are cropped down to the nearest multiple (padded up if smaller).
        input_range (list[float]): the range of ``pred`` and ``target``, mapped to the prior's [-1, 1].
            Default: [0, 1].
        out_of_range (str): what to do with values outside ``input_range``: ``clamp`` them (no gradient flows
            through the clamped values; the pixel loss still pulls them back) or raise an ``error``.
            Default: ``clamp``.
        nonfinite (str): when pred or target holds NaN or Inf, raise an ``error`` naming the iteration, or ``skip``
            the training step (the model logs a warning and counts skipped steps in ``skipped_steps``).
            Default: ``error``.
        seed (int | None): seed of the loss's own random generator (crops, t, noise). Default: None, which takes
            ``torch.initial_seed()`` at construction; BasicSR seeds it with ``manual_seed + rank``, so every rank
            draws differently. Its state is saved in training states, so a resumed run draws what an
            uninterrupted one would.

    What is compared, and how the gradient is formed (docs/method.md):
        space (str): the space of the prediction term (weight ``eps_weight``): ``eps``, the predicted noise (paper;
            logged as ``l_diff_eps``), or ``x0``, the clean images implied by it, ``(x_t - sqrt(1 - abar) eps) /
            sqrt(abar)`` (logged as ``l_diff_x0``; its gradient scale does not grow at small t). Default: the
            preset's (``eps``).
        gradient (str): ``backprop``: through the UNet into the restored image (paper). ``score_difference``: no UNet
            Jacobian for the prediction term; both branches run in one batched call without a graph and the gradient
            with respect to the restored image (in the prior's [-1, 1]) is ``2 w (a(y_t) - a(x_t)) / N`` with ``a``
            the compared quantity (eps or x0); the logged value is the same MSE. The h term, when weighted,
            back-propagates through the UNet's encoder only (the decoder never runs for it).
            Default: the preset's (``score_difference``; the paper's is ``backprop``).
        t_weighting (str): weight of each image's term by its timestep: ``uniform`` or ``snr``,
            ``w(t) = 1 / (1 + SNR(t)) = 1 - abar_t`` normalised to mean 1 over ``t_range``, which evens out the
            term's gradient scale across t (eps differences grow like sqrt(SNR) at small t). Default: the preset's
            (``uniform``).
        augment (bool): apply the same random horizontal/vertical flip and circular shift (by less than the
            UNet's downsampling factor, in its input: pixels, or a latent prior's latents) to both before noising,
            so that the restorer cannot fit patterns locked to the prior's downsampling grid. Default: false.

    Strength relative to the pixel loss (losses/relative_strength.py):
        strength (dict | None): the weight of a term as a multiple of the pixel loss's gradient on the restored
            image, ``{eps: 1.0, h: 0.25}`` (``eps``: the prediction term, whatever its ``space``), measured on the
            live training batches: ``weight = multiple * sum ||grad pixel|| / sum ||grad term at weight 1||`` over
            the first ``strength_iters`` applications, all DDP ranks together, then fixed; logged when set and when
            fixed, saved in training states. The reference is the model's pixel loss (``train.pixel_opt`` with its
            loss_weight), else L1 between output and GT. A term named here takes no ``eps_weight`` / ``h_weight``.
            Default: the preset's (``default``: ``{eps: 2.0}``; ``paper``: none, absolute weights).
            Before the first measurement the loss needs the restored image with its graph (as in training).
        strength_iters (int): applications of the term over which the gradient norms are averaged. Default: 50.
        strength_update (str): ``fixed`` (the weights measured over the first ``strength_iters`` applications stay)
            or ``tracked`` (every application is measured; a moving average over about ``strength_iters``
            applications, so the weights follow the ratio through training: stronger late in training, as the
            term's gradient shrinks faster than L1's; the study found it no better than a larger fixed multiple).
            Default: ``fixed``. Both are an error without relative weights.

    When the term is applied (ApplicationSchedule): ``start_iter`` (0), ``warmup_iters`` (0), ``every`` (1) and
    ``probability`` (1.0); skipped iterations cost nothing and log no diffusion term. The iteration comes from the
    model (``terms(..., current_iter)``); without it the loss counts its own calls.

    Speed and memory: how the prior runs (``dtype``, ``channels_last``, ``gradient_checkpointing``, ``compile``) are
    options of the prior (``prior: {type: DiffusionPrior, dtype: bf16, ...}``); given here they are an error that
    says so. The ground-truth branch always runs without a graph. With ``eps_weight: 0`` the UNet stops after its
    middle block (encoder only: about half the cost).

    ``forward(pred, target)`` returns the weighted sum; ``terms(pred, target, current_iter=None)`` returns each
    weighted term (``l_diff_eps`` or ``l_diff_x0``, ``l_diff_h``) for logging; it is empty on skipped iterations.
    """

    def __init__(self, prior, preset='default', loss_weight=1.0, eps_weight=None, h_weight=None, t_range=None,
                 num_samples=1, crop_size=None, input_range=(0, 1), out_of_range='clamp', nonfinite='error',
                 seed=None, space=None, gradient=None, t_weighting=None, augment=False, start_iter=0,
                 warmup_iters=0, every=1, probability=1.0, strength=None, strength_iters=None,
                 strength_update=None, **unknown):
        super().__init__()
        _refuse_unknown_options(unknown)
        choice('DiffLoss', 'preset', preset, PRESETS)
        self.prior = prior if isinstance(prior, nn.Module) else build_network(dict(prior))
        self.prior.check_unconditional("DiffLoss option 'prior'")
        given = dict(eps_weight=eps_weight, h_weight=h_weight, t_range=t_range, space=space, gradient=gradient,
                     t_weighting=t_weighting)
        if strength is None and PRESETS[preset]['strength']:  # the preset's, for the terms given no absolute weight
            strength = {term: multiple for term, multiple in PRESETS[preset]['strength'].items()
                        if given[f'{term}_weight'] is None} or None
        elif strength is not None:
            for term in ('eps', 'h'):
                if term in strength and given[f'{term}_weight'] is not None:
                    raise OptionError(f"DiffLoss options '{term}_weight' and 'strength.{term}' both set the {term} "
                                      "term's weight: keep one (strength: relative to the pixel loss's gradient).")
        eps_weight, h_weight, t_range, space, gradient, t_weighting = (
            PRESETS[preset][name] if value is None else value for name, value in given.items())
        self.loss_weight = number('DiffLoss', 'loss_weight', loss_weight, minimum=0)
        self.space = choice('DiffLoss', 'space', space, SPACES)
        self.strength = None
        names = {'eps': f'l_diff_{self.space}', 'h': 'l_diff_h'}
        if strength is not None:
            self.strength = RelativeStrength(strength, 50 if strength_iters is None else strength_iters, names,
                                             strength_update or 'fixed')
        else:
            unused = [name for name, value in (('strength_iters', strength_iters), ('strength_update', strength_update))
                      if value is not None]
            if unused:
                raise OptionError(f'DiffLoss options {unused} take effect only with relative weights: give '
                                  "'strength' (e.g. strength: {eps: 1.0}), or remove them.")
        relative = self.strength.strength if self.strength is not None else {}
        self.weights = OrderedDict(
            (name, 1.0 if name in relative else 0.0 if term in (strength or {}) else
             number('DiffLoss', f'{term}_weight', weight, minimum=0))
            for (term, name), weight in zip(names.items(), (eps_weight, h_weight)))
        if not any(self.weights.values()):
            raise OptionError("DiffLoss options 'eps_weight' and 'h_weight' are both 0: set at least one above 0, or "
                              'remove the DiffLoss entry.')
        self.t_range = self._timestep_range(t_range)
        self.num_samples = number('DiffLoss', 'num_samples', num_samples, minimum=1, integer=True)
        self.crop_size = None if crop_size is None else self._crop_size(crop_size)
        low, high = number_or_range('DiffLoss', 'input_range', input_range)
        if not low < high:
            raise option_error('DiffLoss', 'input_range', input_range, 'must be [low, high] with low < high.')
        self.input_range = (low, high)
        self.out_of_range = choice('DiffLoss', 'out_of_range', out_of_range, OUT_OF_RANGE_MODES)
        self.nonfinite = choice('DiffLoss', 'nonfinite', nonfinite, NONFINITE_MODES)
        self.gradient = choice('DiffLoss', 'gradient', gradient, GRADIENT_MODES)
        self.t_weighting = choice('DiffLoss', 't_weighting', t_weighting, T_WEIGHTINGS)
        self.augment = flag('DiffLoss', 'augment', augment)
        self.schedule = ApplicationSchedule(start_iter, warmup_iters, every, probability)
        self._calls = 0
        self.seed = torch.initial_seed() if seed is None else number('DiffLoss', 'seed', seed, minimum=0, integer=True)
        self._generator = None

    def _timestep_range(self, t_range):
        """``t_range`` (None: the whole schedule) as a checked ``(low, high)``."""
        last_t = self.prior.num_train_timesteps - 1
        t_range = t_range or (0, last_t)
        if not isinstance(t_range, (list, tuple)) or len(t_range) != 2:
            raise option_error('DiffLoss', 't_range', t_range, 'must be [low, high].')
        low, high = (number('DiffLoss', 't_range', value, minimum=0, integer=True) for value in t_range)
        if not low <= high <= last_t:
            raise option_error('DiffLoss', 't_range', list(t_range), f'must satisfy 0 <= low <= high <= {last_t} '
                               f'(the prior has {last_t + 1} timesteps).')
        return low, high

    def _crop_size(self, crop_size):
        factor = self.prior.size_factor
        crop_size = number('DiffLoss', 'crop_size', crop_size, minimum=1, integer=True)
        if crop_size % factor:
            latent = '' if self.prior.encoder is None else (
                f" (its VAE's {self.prior.encoder.factor} x its UNet's {self.prior.unet_size_factor}; crop_size is in "
                'pixels)')
            above = (crop_size // factor + 1) * factor
            use = f'{above}' if crop_size < factor else f'{crop_size // factor * factor} or {above}'
            raise option_error('DiffLoss', 'crop_size', crop_size, f"is not a multiple of the prior's size factor "
                               f'{factor}{latent}; use {use}.')
        return crop_size

    def _rng(self):
        """The loss's own generator, on the prior's device (created on first use, after the loss has moved)."""
        device = self.prior.alphas_cumprod.device
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device).manual_seed(self.seed)
        return self._generator

    def manual_seed(self, seed):
        """Restart the loss's generator from ``seed``."""
        self.seed = int(seed)
        self._generator = None

    def rng_state(self):
        """The generator's state, for training states."""
        return self._rng().get_state()

    def set_rng_state(self, state):
        self._rng().set_state(state.cpu())

    def _check_finite(self, pred, target):
        flags = torch.stack([torch.isfinite(pred).all(), torch.isfinite(target).all()]).int()
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(flags, op=dist.ReduceOp.MIN)
        bad = [name for name, flag in zip(('pred', 'target'), flags.tolist()) if not flag]
        if bad:
            raise NonFiniteInputError(f"DiffLoss: {' and '.join(bad)} hold NaN or Inf (on this or another rank). "
                                      "Set DiffLoss option 'nonfinite: skip' to skip such steps.")

    def _within_range(self, image, name):
        low, high = self.input_range
        if self.out_of_range == 'clamp':
            return image.clamp(low, high)
        if image.min() < low or image.max() > high:
            raise ValueError(f'DiffLoss: {name} holds values in [{image.min().item():.4g}, {image.max().item():.4g}], '
                             f"outside option 'input_range' {[low, high]}. Set 'out_of_range: clamp', fix "
                             "'input_range', or clamp the restorer's output.")
        return image

    def _random_offsets(self, room_h, room_w):
        rng = self._rng()
        return tuple(int(torch.randint(room + 1, (), generator=rng, device=rng.device)) for room in (room_h, room_w))

    def _shared_flip_and_shift(self, y0, x0):
        """The same random flips and circular shift (less than the UNet's downsampling factor, in its input: pixels
        or latents) of both inputs."""
        rng = self._rng()
        draws = torch.randint(self.prior.unet_size_factor, (4, ), generator=rng, device=rng.device).tolist()
        flips = [dim for dim, draw in zip((-1, -2), draws[:2]) if draw % 2]
        shift = draws[2:]
        if flips:
            y0, x0 = y0.flip(flips), x0.flip(flips)
        return y0.roll(shift, dims=(-2, -1)), x0.roll(shift, dims=(-2, -1))

    def _timestep_weights(self, t):
        """Each image's weight (B, 1, 1, 1) under ``t_weighting``, with mean 1 over ``t_range``."""
        if self.t_weighting == 'uniform':
            return torch.ones_like(t, dtype=torch.float32).view(-1, 1, 1, 1)
        low, high = self.t_range
        noise_share = 1 - self.prior.alphas_cumprod  # 1 / (1 + SNR(t))
        return (noise_share[t] / noise_share[low:high + 1].mean()).view(-1, 1, 1, 1)

    @staticmethod
    def _distance(pred_side, target_side, weights, y0=None):
        """Weighted MSE. With ``y0`` (score difference) its gradient reaches ``y0`` directly: 2 w (pred - target) / N;
        without, it flows through ``pred_side``'s graph."""
        difference = pred_side.float() - target_side.float()
        value = (weights * difference.square()).mean()
        if y0 is None:
            return value
        surrogate = (2 * weights * difference.detach() * y0).sum() / difference.numel()
        return value.detach() + surrogate - surrogate.detach()

    def terms(self, pred, target, current_iter=None, reference=None):
        """Each weighted diffusion term, as an OrderedDict of scalar tensors (only the terms with weight > 0; none on
        the iterations the schedule skips). ``current_iter``: the training iteration (1-based), for the schedule.
        ``reference``: the model's pixel loss on ``pred``, the reference of option ``strength`` (default: L1)."""
        if pred.shape != target.shape:
            raise ValueError(f'DiffLoss: pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape.')
        self._check_finite(pred, target)
        self._calls += 1
        scale = self.schedule.scale(self._calls if current_iter is None else current_iter, self._rng())
        measuring = self.strength is not None and self.strength.measuring
        if not scale:
            if measuring:
                self.strength.measure(None, None, pred)
            return OrderedDict()
        output, gt = pred, target
        pred, target = self.prior.fit_size([self._within_range(pred, 'pred'),
                                            self._within_range(target.detach(), 'target')], self.crop_size,
                                           self._random_offsets)
        y0 = self.prior.to_input(pred, self.input_range).repeat(self.num_samples, 1, 1, 1)
        x0 = self.prior.to_input(target, self.input_range).repeat(self.num_samples, 1, 1, 1)
        if self.augment:
            y0, x0 = self._shared_flip_and_shift(y0, x0)
        rng = self._rng()
        t = torch.randint(self.t_range[0], self.t_range[1] + 1, (x0.shape[0], ), generator=rng, device=rng.device)
        noise = torch.randn(x0.shape, generator=rng, device=rng.device)
        x_t, y_t = self.prior.add_noise(x0, noise, t), self.prior.add_noise(y0, noise, t)
        prediction_name = f'l_diff_{self.space}'
        with_prediction, with_h = self.weights[prediction_name] > 0, self.weights['l_diff_h'] > 0
        if self.gradient == 'score_difference' and with_prediction:
            # No graph through the UNet for the prediction term: both branches in one batched no-grad call. The h
            # term, if any, back-propagates through the encoder alone (the decoder never runs for it).
            with torch.no_grad():
                eps, h = self.prior(torch.cat([y_t, x_t]), torch.cat([t, t]))
            (eps_pred, eps_target), (h_pred, h_target) = eps.chunk(2), h.chunk(2)
            if with_h:
                h_pred = self.prior(y_t, t, features_only=True)[1]
        else:
            with torch.no_grad():
                eps_target, h_target = self.prior(x_t, t, features_only=not with_prediction)
            eps_pred, h_pred = self.prior(y_t, t, features_only=not with_prediction)
        if self.space == 'x0' and with_prediction:
            eps_pred, eps_target = self.prior.to_x0(eps_pred, y_t, t), self.prior.to_x0(eps_target, x_t, t)
        weights = self._timestep_weights(t)
        distances = OrderedDict()
        if with_prediction:
            distances[prediction_name] = self._distance(eps_pred, eps_target, weights,
                                                        y0 if self.gradient == 'score_difference' else None)
        if with_h:
            distances['l_diff_h'] = self._distance(h_pred, h_target, weights)
        term_weights = dict(self.weights)
        if self.strength is not None:
            if measuring and torch.is_grad_enabled() and output.requires_grad:
                reference = F.l1_loss(output, gt) if reference is None else reference
                self.strength.measure(reference, distances, output)
            if self.strength.weights is None:
                raise OptionError("DiffLoss option 'strength': no weight measured yet; the first calls must have the "
                                  'restored image with its gradient (as in training).')
            term_weights.update(self.strength.weights)
        return OrderedDict((name, self.loss_weight * term_weights[name] * scale * distance)
                           for name, distance in distances.items())

    def forward(self, pred, target):
        terms = self.terms(pred, target)
        return sum(terms.values()) if terms else pred.sum() * 0  # a skipped iteration: a zero that keeps the graph


def _refuse_unknown_options(unknown):
    """An error for options DiffLoss does not take, saying where the prior's execution options now go."""
    moved = sorted(name for name in unknown if name in PRIOR_EXECUTION_OPTIONS)
    if moved:
        written = ', '.join(f'{name}: {unknown[name]}' for name in moved)
        raise OptionError(f"DiffLoss options {moved} choose how the prior runs and belong to the prior now: write them "
                          f'under prior, e.g. prior: {{type: DiffusionPrior, pretrained: ..., {written}}}.')
    if unknown:
        raise OptionError(f'DiffLoss has no option(s) {sorted(unknown)}; see the DiffLoss options in README.md.')
