"""DiffLoss: a frozen diffusion prior used as a training constraint (Tan & Zhao, arXiv 2406.19030)."""
import difflib
import inspect
from collections import OrderedDict

import torch
import torch.distributed as dist
import torch.nn.functional as F
from basicsr.archs import build_network
from basicsr.utils import get_root_logger
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn

from ..options import OptionError, choice, flag, number, number_or_range, option_error
from ..priors import EXECUTION_OPTIONS  # how the prior runs is the prior's business: they moved from DiffLoss to it
from .application_schedule import AUTO_START_SHARE, ApplicationSchedule
from .backoff import Backoff
from .conflict_guard import ConflictGuard
from .method_presets import PRESETS, resolve_method
from .relative_strength import RelativeStrength

OUT_OF_RANGE_MODES = ('clamp', 'error')
NONFINITE_MODES = ('error', 'skip')
SPACES = ('eps', 'x0')
GRADIENT_MODES = ('backprop', 'score_difference')
T_WEIGHTINGS = ('uniform', 'snr')
# input_range is checked against the ground truth of the first batches: values beyond it by more than this share of its
# width, or data spanning less than MIN_RANGE_SHARE of it, or unsigned data in a symmetric signed range, are an error
RANGE_CHECK_BATCHES = 8
RANGE_TOLERANCE = 0.01
MIN_RANGE_SHARE = 0.2


class NonFiniteInputError(FloatingPointError):
    """pred or target holds NaN or Inf. Raised on every rank at once, so that all ranks can skip the step together."""


@LOSS_REGISTRY.register()
class DiffLoss(nn.Module):
    """Diffusion-prior constraint between a restored image and its ground truth.

    Both images are mapped to [-1, 1], noised to the same timestep t with the same noise, and passed through a frozen
    diffusion UNet. The loss compares the UNet's noise predictions (``eps`` term, "naturalness") and its middle-block
    features (``h`` term, "semantics"). The ground-truth branch runs without gradient. How the gradient reaches the
    restorer is option ``gradient``: by default (``score_difference``) both branches run in one call without a graph
    and the eps term's gradient on the restored image is the difference of the two predictions; with ``backprop``
    (the paper's) it flows *through* the UNet (the authors' released code lost it under ``torch.no_grad()``).
    The pixel loss leads: by default the term joins after 40% of the run (``start_iter: auto``), a conflict guard
    keeps it from pulling any of the restorer's weights against the pixel loss (``max_conflict``), and it backs off
    if the pixel loss rises after it joined (``backoff_margin``).

    Args:
        prior (dict | nn.Module): DiffusionPrior options, e.g. ``{type: DiffusionPrior, pretrained: DIR}``, or a
            built prior (to share one between losses).
        preset (str): where ``eps_weight``, ``h_weight``, ``t_range``, ``space``, ``gradient``, ``t_weighting``,
            ``strength``, ``max_conflict``, ``start_iter`` and ``backoff_margin`` come from when not given.
            ``default`` (the eps weight from ``strength: {eps: 2.0}`` under the guard's ``max_conflict: 0``, h 0,
            [200, 800], eps, score_difference, uniform, joining at ``start_iter: auto`` with ``backoff_margin:
            0.1``: docs/study.md); ``backprop`` (the same with the paper's gradient through the UNet,
            ``strength: {eps: 1.0}``); ``paper`` (1e-3, 1e-6, the whole schedule, eps, backprop, uniform, absolute
            weights, no guard, from the first iteration, no back-off: the method as published). A term is relative or
            absolute, never both (losses/method_presets.py): one named in ``strength`` is relative, one given
            ``eps_weight``/``h_weight`` absolute, any other keeps the preset's rule, so ``strength: {h: 0.25}`` keeps
            the default's relative eps term and ``eps_weight: 3.5`` makes eps absolute. The start-up log says in one
            line what was resolved and where each part came from. Default: ``default``.
        loss_weight (float): multiplies every term. Default: 1.0.
        eps_weight (float): weight of ``mean((eps(y_t) - eps(x_t))^2)``. Default: the preset's (for ``default`` and
            ``backprop``: set by their ``strength``).
        h_weight (float): weight of the "semantic" term, which compares the UNet's middle-block features of the two
            noised images, ``mean((h(y_t) - h(x_t))^2)``; 0 turns it off. Default: the preset's.
        t_range (list[int]): ``[low, high]``, both inclusive; t is drawn uniformly from it, one per image and draw.
            Default: the preset's.
        num_samples (int): how many times each image is noised and judged per step (each with its own t and noise),
            averaged: less noisy, proportionally slower. Default: 1.
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
        space (str): what the main term compares: the noise the UNet predicts in both images (``eps``, the paper's;
            logged as ``l_diff_eps``) or the clean images those predictions imply (``x0``, ``(x_t - sqrt(1 - abar)
            eps) / sqrt(abar)``, logged as ``l_diff_x0``; its gradient scale does not grow at small t). Default: the
            preset's (``eps``).
        gradient (str): how the main term's gradient reaches the restorer: ``backprop`` back-propagates through the
            UNet into the restored image (the paper's; costly); ``score_difference`` skips the UNet's Jacobian: both
            images run in one batched call without a graph, and the gradient on the restored image (in the prior's
            [-1, 1]) is ``2 w (a(y_t) - a(x_t)) / N`` with ``a`` the compared quantity (eps or x0); the logged value
            is the same MSE. (``preset: backprop`` is the default preset with ``gradient: backprop``.) The h term,
            when weighted, back-propagates through the UNet's encoder only (the decoder never runs for it).
            Default: the preset's (``score_difference``; the paper's is ``backprop``).
        t_weighting (str): weight of each image's term by its timestep: ``uniform`` or ``snr``,
            ``w(t) = 1 / (1 + SNR(t)) = 1 - abar_t`` normalised to mean 1 over ``t_range``, which evens out the
            term's gradient scale across t (eps differences grow like sqrt(SNR) at small t). Default: the preset's
            (``uniform``).
        augment (bool): flip and shift both images alike, at random, before the prior sees them: the same
            horizontal/vertical flip and a circular shift by less than the UNet's downsampling factor (in its input:
            pixels, or a latent prior's latents), so that the restorer cannot fit patterns locked to the prior's
            downsampling grid. Default: false.

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

    The conflict guard (losses/conflict_guard.py), in training, where the model passes the restorer's parameters:
        max_conflict (float | false): how far the term may pull any of the restorer's weights against the pixel
            loss: 0 never, 1 up to stopping it, false without limit (no guard). Precisely: on each weight, the largest
            share of the pixel loss's momentum (the running mean of its gradient, Adam's first moment, decay 0.9)
            that the diffusion terms' momentum may oppose; where it would oppose more, the terms hand the optimizer
            the gradient that holds it at that share. Where they agree with the pixel loss they pass unchanged. It
            runs on the steps the term applies and costs one backward pass of the restorer more than an unguarded
            step (the pixel loss's gradient and the terms' are taken apart), none of the prior, and memory for two
            momenta and two flattened gradients the size of the restorer's trainable parameters (under DDP, one
            all-reduce of both gradients per step). ``conflict_diff`` (the share of the pixel loss's first-order
            descent the raw terms take back), ``cos_diff`` (the cosine of the two gradients on the weights) and
            ``kept_diff`` (the projection of the gradient handed on onto the raw one) are logged on the steps the
            term applies; a warning names the options to change when ``kept_diff`` averages below 0.5 over 100
            steps. Default: the preset's (0; ``paper``: false).

    When the term is applied (ApplicationSchedule): ``start_iter`` (the preset's: ``auto``, 40% of the run),
    ``warmup_iters`` (0), ``every`` (1) and ``probability`` (1.0); skipped iterations run neither the prior nor the
    guard and log no diffusion term. The iteration comes from the model (``terms(..., current_iter)``); without it
    the loss counts its own calls.

    The back-off (losses/backoff.py), in training, on the pixel loss (the reference above) smoothed over about 50
    iterations, once the term has joined:
        backoff_margin (float | false): how much the smoothed pixel loss may rise above its value when the term
            joined, as a share of it, before the term backs off: after ``backoff_patience`` consecutive iterations
            above it the term's weight halves, after as many more the term is off for the rest of the run (each with
            a warning). ``false``: never. Default: the preset's (0.1; ``paper``: false).
        backoff_patience (int): consecutive iterations above the margin before each back-off step. Default: 25.

    Speed and memory: how the prior runs (``dtype``, ``channels_last``, ``gradient_checkpointing``, ``compile``) are
    options of the prior (``prior: {type: DiffusionPrior, dtype: bf16, ...}``); given here they are an error that
    says so. The ground-truth branch always runs without a graph. With ``eps_weight: 0`` the UNet stops after its
    middle block (encoder only: about half the cost).

    ``forward(pred, target)`` returns the weighted sum; ``terms(pred, target, current_iter=None, reference=None,
    parameters=None, reference_name=None)`` returns each weighted term (``l_diff_eps`` or ``l_diff_x0``,
    ``l_diff_h``) for logging, after the reference under ``reference_name`` when given; no term on skipped
    iterations.
    """

    def __init__(self, prior, preset='default', loss_weight=1.0, eps_weight=None, h_weight=None, t_range=None,
                 num_samples=1, crop_size=None, input_range=(0, 1), out_of_range='clamp', nonfinite='error',
                 seed=None, space=None, gradient=None, t_weighting=None, augment=False, start_iter=None,
                 warmup_iters=0, every=1, probability=1.0, strength=None, strength_iters=None,
                 strength_update=None, max_conflict=None, backoff_margin=None, backoff_patience=None, **unknown):
        super().__init__()
        _refuse_unknown_options(unknown)
        method, sources = resolve_method(preset, dict(
            eps_weight=eps_weight, h_weight=h_weight, t_range=t_range, space=space, gradient=gradient,
            t_weighting=t_weighting, strength=strength, max_conflict=max_conflict, start_iter=start_iter,
            backoff_margin=backoff_margin))
        self.prior = prior if isinstance(prior, nn.Module) else build_network(dict(prior))
        self.prior.check_unconditional("DiffLoss option 'prior'")
        self.loss_weight = number('DiffLoss', 'loss_weight', loss_weight, minimum=0)
        self.space = choice('DiffLoss', 'space', method['space'], SPACES)
        self.strength = None
        names = {'eps': f'l_diff_{self.space}', 'h': 'l_diff_h'}
        if method['strength'] is not None:
            self.strength = RelativeStrength(method['strength'], 50 if strength_iters is None else strength_iters,
                                             names, strength_update or 'fixed')
        else:
            unused = [name for name, value in (('strength_iters', strength_iters), ('strength_update', strength_update))
                      if value is not None]
            if unused:
                raise OptionError(f'DiffLoss options {unused} take effect only with relative weights: give '
                                  "'strength' (e.g. strength: {eps: 1.0}), or remove them.")
        relative = self.strength.strength if self.strength is not None else {}
        self.weights = OrderedDict(
            (name, 1.0 if name in relative else 0.0 if term in (method['strength'] or {}) else
             number('DiffLoss', f'{term}_weight', method[f'{term}_weight'], minimum=0))
            for term, name in names.items())
        if not any(self.weights.values()):
            raise OptionError("DiffLoss options 'eps_weight' and 'h_weight' are both 0: set at least one above 0, or "
                              'remove the DiffLoss entry.')
        t_range, space, gradient, t_weighting = (method[name] for name in ('t_range', 'space', 'gradient',
                                                                           't_weighting'))
        self.t_range = self._timestep_range(t_range)
        self.num_samples = number('DiffLoss', 'num_samples', num_samples, minimum=1, integer=True)
        self.crop_size = None if crop_size is None else self._crop_size(crop_size)
        low, high = number_or_range('DiffLoss', 'input_range', input_range)
        if not low < high:
            raise option_error('DiffLoss', 'input_range', input_range, 'must be [low, high] with low < high.')
        self.input_range = (low, high)
        self._range_seen, self._range_checks = (), 0  # the ground truth's range over the first batches
        self.out_of_range = choice('DiffLoss', 'out_of_range', out_of_range, OUT_OF_RANGE_MODES)
        self.nonfinite = choice('DiffLoss', 'nonfinite', nonfinite, NONFINITE_MODES)
        self.gradient = choice('DiffLoss', 'gradient', gradient, GRADIENT_MODES)
        self.t_weighting = choice('DiffLoss', 't_weighting', t_weighting, T_WEIGHTINGS)
        self.augment = flag('DiffLoss', 'augment', augment)
        self.schedule = ApplicationSchedule(method['start_iter'], warmup_iters, every, probability)
        self._calls = 0
        self.seed = torch.initial_seed() if seed is None else number('DiffLoss', 'seed', seed, minimum=0, integer=True)
        self._generator = None
        self.guard = None
        if method['max_conflict'] is not False:
            self.guard = ConflictGuard(number('DiffLoss', 'max_conflict', method['max_conflict'], minimum=0,
                                              maximum=1))
        self.backoff = None
        if method['backoff_margin'] is not False:
            self.backoff = Backoff(number('DiffLoss', 'backoff_margin', method['backoff_margin'], minimum=0),
                                   number('DiffLoss', 'backoff_patience', 25 if backoff_patience is None else
                                          backoff_patience, minimum=1, integer=True))
        elif backoff_patience is not None:
            raise OptionError("DiffLoss option 'backoff_patience' takes effect only with the back-off on: give "
                              "'backoff_margin' (e.g. 0.1) or remove 'backoff_patience'.")
        get_root_logger().info(f'DiffLoss method: {self.describe(sources)}')

    def describe(self, sources):
        """One line: the gradient, space, t range and weighting, each term's weight rule, and where each came from."""
        def source(name):
            return f' ({sources[name]})' if sources[name] != 'given' else ''

        rules = []
        for term, name in zip(('eps', 'h'), self.weights):
            key = f'{term}_weight'
            if self.strength is not None and name in self.strength.strength:
                rules.append(f"{name} {self.strength.strength[name]:g} x the pixel loss's gradient ({sources[key]})")
            elif self.weights[name]:
                rules.append(f'{name} weight {self.weights[name]:g}{source(key)}')
            else:
                rules.append(f'{name} off{source(key)}')
        guard = ('no conflict guard (max_conflict false)' if self.guard is None else
                 f'max_conflict {self.guard.max_conflict:g}{source("max_conflict")}')
        start = (f'start_iter auto ({AUTO_START_SHARE:.0%} of train.total_iter)' if self.schedule.auto else
                 f'start_iter {self.schedule.start_iter}')
        backoff = ('no back-off (backoff_margin false)' if self.backoff is None else
                   f'backoff_margin {self.backoff.margin:g}{source("backoff_margin")}, backoff_patience '
                   f'{self.backoff.patience}')
        return (f'gradient {self.gradient}{source("gradient")}, space {self.space}{source("space")}, t_range '
                f'{list(self.t_range)}{source("t_range")}, t_weighting {self.t_weighting}{source("t_weighting")}; '
                f'{"; ".join(rules)}; {guard}; {start}{source("start_iter")}; {backoff}; '
                f'loss_weight {self.loss_weight:g}.')

    def set_training_length(self, total_iter):
        """The run's length (``train.total_iter``; the model calls this at start-up), which ``start_iter: auto``
        needs."""
        self.schedule.set_training_length(total_iter)
        get_root_logger().info(f'DiffLoss schedule: the term joins at iteration {self.schedule.start_iter} '
                               f'({self.schedule.describe()}).')

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

    def training_state(self):
        """What a resumed run needs besides the weights, for training states: this rank's generator state, and the
        strength weights, guard momenta and back-off state, which are the same on every DDP rank (measured on
        gradients and losses averaged over the ranks)."""
        return {'diffloss': self.rng_state(),
                'diffloss_strength': self.strength.state_dict() if self.strength is not None else None,
                'diffloss_guard': self.guard.state_dict() if self.guard is not None else None,
                'diffloss_backoff': self.backoff.state_dict() if self.backoff is not None else None}

    def load_training_state(self, state, random_state=True):
        """Restores ``training_state()``'s; ``random_state=False`` leaves the generator alone (a resume on another
        number of processes, where rank r's generator has no counterpart). States of older versions lack parts."""
        if random_state and state.get('diffloss') is not None:
            self.set_rng_state(state['diffloss'])
        for part, key in ((self.strength, 'diffloss_strength'), (self.guard, 'diffloss_guard'),
                          (self.backoff, 'diffloss_backoff')):
            if part is not None and state.get(key):
                part.load_state_dict(state[key])

    def _check_finite(self, pred, target):
        flags = torch.stack([torch.isfinite(pred).all(), torch.isfinite(target).all()]).int()
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(flags, op=dist.ReduceOp.MIN)
        bad = [name for name, flag in zip(('pred', 'target'), flags.tolist()) if not flag]
        if bad:
            raise NonFiniteInputError(f"DiffLoss: {' and '.join(bad)} hold NaN or Inf (on this or another rank). "
                                      "Set DiffLoss option 'nonfinite: skip' to skip such steps.")

    def _check_input_range(self, target):
        """Over the first ``RANGE_CHECK_BATCHES`` calls, the ground truth's values against ``input_range``: values
        beyond it, or data that fills a tiny part of it (``[0, 255]`` declared for [0, 1] images, where the prior would
        see nearly black images while relative strength hides it by a huge weight), are an error naming the option."""
        if self._range_seen is None:
            return
        low, high = self.input_range
        seen_low, seen_high = target.min().item(), target.max().item()
        if self._range_seen:
            seen_low, seen_high = min(seen_low, self._range_seen[0]), max(seen_high, self._range_seen[1])
        self._range_seen = (seen_low, seen_high)
        width = high - low
        fix = ("Set DiffLoss option 'input_range' to the range of your images (BasicSR's datasets give [0, 1]: the "
               'default).')
        if seen_low < low - RANGE_TOLERANCE * width or seen_high > high + RANGE_TOLERANCE * width:
            raise OptionError(f"DiffLoss option 'input_range': {[low, high]} but the ground truth holds values in "
                              f'[{seen_low:.4g}, {seen_high:.4g}]. {fix}')
        self._range_checks += 1
        if self._range_checks < RANGE_CHECK_BATCHES:
            return
        self._range_seen = None  # checked
        if seen_high - seen_low < MIN_RANGE_SHARE * width or (low < 0 <= seen_low and high > 0 and low == -high):
            raise OptionError(f"DiffLoss option 'input_range': {[low, high]} but the ground truth of the first "
                              f'{RANGE_CHECK_BATCHES} batches spans only [{seen_low:.4g}, {seen_high:.4g}]: the prior '
                              f'would see images squeezed into part of its [-1, 1]. {fix}')

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

    def terms(self, pred, target, current_iter=None, reference=None, parameters=None, reference_name=None):
        """Each weighted diffusion term, as an OrderedDict of scalar tensors (only the terms with weight > 0; none on
        the iterations the schedule skips). ``current_iter``: the training iteration (1-based), for the schedule.
        ``reference``: the model's pixel loss on ``pred``, the reference of option ``strength``, of the conflict
        guard and of the back-off (default: L1). ``parameters``: the restorer's trainable parameters, on which the
        guard projects the terms' gradient (without them it does nothing). ``reference_name``: the dict then starts
        with ``reference`` under this name, and the sum of the values has the gradient of the reference and the
        terms together; under the guard the restorer is then differentiated twice per step, not three times."""
        if pred.shape != target.shape:
            raise ValueError(f'DiffLoss: pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape.')
        self._check_finite(pred, target)
        self._check_input_range(target)
        self._calls += 1
        given = OrderedDict() if reference_name is None or reference is None else OrderedDict(
            [(reference_name, reference)])
        if not self.loss_weight:  # every term is 0: the prior is not run (the model warns at start-up)
            return given
        iteration = self._calls if current_iter is None else current_iter
        scale = self.schedule.scale(iteration, self._rng())
        live = torch.is_grad_enabled() and pred.requires_grad
        measuring = self.strength is not None and self.strength.measuring
        guarding = self.guard is not None and parameters is not None and live
        carry = guarding and bool(given)
        if live and reference is None and (measuring or guarding):
            reference = F.l1_loss(pred, target)
        if live and self.backoff is not None:
            pixel = reference if reference is not None else F.l1_loss(pred.detach(), target)
            scale *= self.backoff.observe(pixel, iteration >= self.schedule.start_iter, current_iter)
        if not scale:  # every rank takes part in the all-reduced measurements, also one that skips the term
            if measuring:
                self.strength.measure(None, None, pred)
            if guarding and self.schedule.probability < 1:  # other DDP ranks may apply the term at this step
                self.guard.project(None, {}, parameters, current_iter)
            return given
        output = pred
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
            if measuring and live:
                self.strength.measure(reference, distances, output)
            if self.strength.weights is None:
                raise OptionError("DiffLoss option 'strength': no weight measured yet; the first calls must have the "
                                  'restored image with its gradient (as in training).')
        if self.strength is not None:
            term_weights.update(self.strength.weights)
        weighted = OrderedDict((name, self.loss_weight * term_weights[name] * scale * distance)
                               for name, distance in distances.items())
        if guarding:
            weighted = self.guard.project(reference, weighted, parameters, current_iter, carry_reference=carry)
        if carry:  # the first term carries the reference's gradient
            given[reference_name] = reference.detach()
        given.update(weighted)
        return given

    def forward(self, pred, target):
        terms = self.terms(pred, target)
        return sum(terms.values()) if terms else pred.sum() * 0  # a skipped iteration: a zero that keeps the graph


# Options earlier versions took, and what replaced them: followed blindly, the closest known name could mislead.
REMOVED_OPTIONS = {
    'guard_every': 'the conflict guard now runs on every step (max_conflict sets it; false turns it off).',
}


def _refuse_unknown_options(unknown):
    """An error for options DiffLoss does not take, saying where the prior's execution options now go."""
    moved = sorted(name for name in unknown if name in EXECUTION_OPTIONS)
    if moved:
        written = ', '.join(f'{name}: {unknown[name]}' for name in moved)
        raise OptionError(f"DiffLoss options {moved} choose how the prior runs and belong to the prior now: write them "
                          f'under prior, e.g. prior: {{type: DiffusionPrior, pretrained: ..., {written}}}.')
    removed = sorted(name for name in unknown if name in REMOVED_OPTIONS)
    if removed:
        raise OptionError(f'DiffLoss options {removed} were removed: ' +
                          ' '.join(f"'{name}': {REMOVED_OPTIONS[name]}" for name in removed) +
                          ' Delete them from diffusion_opt.')
    if unknown:
        known = [name for name in inspect.signature(DiffLoss).parameters if name != 'unknown']
        hints = [f"'{name}': did you mean '{close[0]}'?" for name in sorted(unknown)
                 for close in [difflib.get_close_matches(name, known, n=1)] if close]
        raise OptionError(f"DiffLoss has no option(s) {sorted(unknown)}{'; ' + ' '.join(hints) if hints else ''} "
                          'See the DiffLoss options in docs/options.md.')
