"""DiffLoss: a frozen diffusion prior used as a training constraint (Tan & Zhao, arXiv 2406.19030)."""
from collections import OrderedDict

import torch
import torch.distributed as dist
import torch.nn.functional as F
from basicsr.archs import build_network
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn

from .application_schedule import ApplicationSchedule
from .options import choice, flag, number

# Named settings of the method options (t_range None: the whole schedule). 'paper' is the authors' setting; their
# released code ran both UNet calls under torch.no_grad(), so these weights never sent a gradient and nobody tuned
# them. 'measured' is the best setting of the study (docs/study.md): the eps term with the score-difference gradient
# at t 200-800, weight 3.5 (a gradient 1x L1's on early x4 SR outputs with the default prior and crop_size 32). It
# is the default. 'backprop' is the paper's gradient at the study's strength (0.5x L1's), the runner-up.
PAPER = dict(eps_weight=1e-3, h_weight=1e-6, t_range=None, space='eps', gradient='backprop', t_weighting='uniform')
MEASURED = dict(PAPER, eps_weight=3.5, h_weight=0.0, t_range=(200, 800), gradient='score_difference')
PRESETS = {
    'default': MEASURED,
    'measured': MEASURED,
    'backprop': dict(MEASURED, eps_weight=2.0, gradient='backprop'),
    'paper': PAPER,
}
DTYPES = {'fp32': torch.float32, 'float32': torch.float32, 'bf16': torch.bfloat16, 'bfloat16': torch.bfloat16,
          'fp16': torch.float16, 'float16': torch.float16}
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
        preset (str): where ``eps_weight``, ``h_weight``, ``t_range``, ``space``, ``gradient`` and ``t_weighting``
            come from when not given. ``default`` = ``measured`` (3.5, 0.0, [200, 800], eps, score_difference,
            uniform: the study's best, docs/study.md); ``backprop`` (the same with the paper's gradient through the
            UNet, weight 2.0); ``paper`` (1e-3, 1e-6, the whole schedule, eps, backprop, uniform).
            Default: ``default``.
        loss_weight (float): multiplies every term. Default: 1.0.
        eps_weight (float): weight of ``mean((eps(y_t) - eps(x_t))^2)``. Default: the preset's.
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
            Jacobian; the restored branch runs without a graph and the gradient with respect to the restored image
            (in the prior's [-1, 1]) is ``2 w (a(y_t) - a(x_t)) / N`` with ``a`` the compared quantity (eps or x0).
            About 30% cheaper per step; the logged value is the same MSE. Needs ``h_weight: 0``.
            Default: the preset's (``score_difference``; the paper's is ``backprop``).
        t_weighting (str): weight of each image's term by its timestep: ``uniform`` or ``snr``,
            ``w(t) = 1 / (1 + SNR(t)) = 1 - abar_t`` normalised to mean 1 over ``t_range``, which evens out the
            term's gradient scale across t (eps differences grow like sqrt(SNR) at small t). Default: the preset's
            (``uniform``).
        augment (bool): apply the same random horizontal/vertical flip and circular shift (by less than the
            prior's size factor) to both images before noising, so that the restorer cannot fit patterns locked
            to the prior's downsampling grid. Default: false.

    When the term is applied (ApplicationSchedule): ``start_iter`` (0), ``warmup_iters`` (0), ``every`` (1) and
    ``probability`` (1.0); skipped iterations cost nothing and log no diffusion term. The iteration comes from the
    model (``terms(..., current_iter)``); without it the loss counts its own calls.

    Speed and memory (docs/performance.md; none changes the loss beyond rounding):
        dtype (str): precision of the prior's weights and activations: ``fp32``, ``bf16``, ``fp16`` or ``auto``
            (``bf16`` on a CUDA device that supports it, else ``fp32``; decided at the first call, on the prior's
            device). Noising and the loss reduction stay in float32. Default: ``auto``.
        channels_last (bool): NHWC memory format for the prior. Default: false.
        gradient_checkpointing (bool): recompute the prior's activations in the backward pass of the restored
            branch instead of storing them. Default: false.
        compile (bool): ``torch.compile`` the prior (slow first steps, then faster). Default: false.
        The ground-truth branch always runs without a graph. With ``eps_weight: 0`` the UNet stops after its middle
        block (encoder only: about half the cost).

    ``forward(pred, target)`` returns the weighted sum; ``terms(pred, target, current_iter=None)`` returns each
    weighted term (``l_diff_eps`` or ``l_diff_x0``, ``l_diff_h``) for logging; it is empty on skipped iterations.
    """

    def __init__(self, prior, preset='default', loss_weight=1.0, eps_weight=None, h_weight=None, t_range=None,
                 num_samples=1, crop_size=None, input_range=(0, 1), out_of_range='clamp', nonfinite='error',
                 seed=None, space=None, gradient=None, t_weighting=None, augment=False, start_iter=0,
                 warmup_iters=0, every=1, probability=1.0, dtype='auto', channels_last=False,
                 gradient_checkpointing=False, compile=False):
        super().__init__()
        if preset not in PRESETS:
            raise ValueError(f"DiffLoss option 'preset': {preset!r} is not one of {sorted(PRESETS)}.")
        self.prior = prior if isinstance(prior, nn.Module) else build_network(dict(prior))
        if self.prior.unet.class_embedding is not None:
            raise ValueError("DiffLoss option 'prior': the prior is class-conditional, and DiffLoss gives it no class "
                             'labels; use an unconditional prior (e.g. guided_diffusion preset '
                             '256x256_diffusion_uncond).')
        last_t = self.prior.num_train_timesteps - 1
        given = dict(eps_weight=eps_weight, h_weight=h_weight, t_range=t_range, space=space, gradient=gradient,
                     t_weighting=t_weighting)
        eps_weight, h_weight, t_range, space, gradient, t_weighting = (
            PRESETS[preset][name] if value is None else value for name, value in given.items())
        t_range = t_range or (0, last_t)
        self.loss_weight = number('loss_weight', loss_weight, minimum=0)
        self.space = choice('space', space, SPACES)
        self.weights = OrderedDict([(f'l_diff_{self.space}', number('eps_weight', eps_weight, minimum=0)),
                                    ('l_diff_h', number('h_weight', h_weight, minimum=0))])
        if not any(self.weights.values()):
            raise ValueError("DiffLoss options 'eps_weight' and 'h_weight' are both 0: set at least one above 0, or "
                             'remove the DiffLoss entry.')
        if len(t_range) != 2:
            raise ValueError(f"DiffLoss option 't_range': {t_range!r} must be [low, high].")
        low, high = (number('t_range', value, minimum=0, integer=True) for value in t_range)
        if not low <= high <= last_t:
            raise ValueError(f"DiffLoss option 't_range': {list(t_range)} must satisfy 0 <= low <= high <= {last_t} "
                             f'(the prior has {last_t + 1} timesteps).')
        self.t_range = (low, high)
        self.num_samples = number('num_samples', num_samples, minimum=1, integer=True)
        factor = self.prior.size_factor
        if crop_size is not None:
            crop_size = number('crop_size', crop_size, minimum=factor, integer=True)
            if crop_size % factor:
                raise ValueError(f"DiffLoss option 'crop_size': {crop_size} is not a multiple of the prior's size "
                                 f'factor {factor}; use {crop_size // factor * factor} or '
                                 f'{(crop_size // factor + 1) * factor}.')
        self.crop_size = crop_size
        low_in, high_in = (number('input_range', value) for value in input_range)
        if not low_in < high_in:
            raise ValueError(f"DiffLoss option 'input_range': {list(input_range)} must be [low, high] with low < high.")
        self.input_range = (low_in, high_in)
        self.out_of_range = choice('out_of_range', out_of_range, OUT_OF_RANGE_MODES)
        self.nonfinite = choice('nonfinite', nonfinite, NONFINITE_MODES)
        self.gradient = choice('gradient', gradient, GRADIENT_MODES)
        if self.gradient == 'score_difference' and self.weights['l_diff_h']:
            raise ValueError("DiffLoss option 'gradient: score_difference' forms the gradient from eps or x0 "
                             "differences and has none for the h term: set 'h_weight: 0' or 'gradient: backprop'.")
        self.t_weighting = choice('t_weighting', t_weighting, T_WEIGHTINGS)
        self.augment = flag('augment', augment)
        self.schedule = ApplicationSchedule(start_iter, warmup_iters, every, probability)
        self.dtype = DTYPES.get(choice('dtype', dtype, [*DTYPES, 'auto']))  # None for auto: decided at first use
        # The speed options, applied to the prior at the first call (None once applied).
        self._execution = dict(channels_last=flag('channels_last', channels_last),
                               gradient_checkpointing=flag('gradient_checkpointing', gradient_checkpointing),
                               compile=flag('compile', compile))
        self._calls = 0
        self.seed = torch.initial_seed() if seed is None else number('seed', seed, minimum=0, integer=True)
        self._generator = None

    def _set_execution(self):
        """Resolve ``dtype: auto`` on the prior's device and apply the speed options, once, at the first call."""
        device = self.prior.alphas_cumprod.device
        if self.dtype is None:
            bf16 = device.type == 'cuda' and torch.cuda.is_bf16_supported()
            self.dtype = torch.bfloat16 if bf16 else torch.float32
        self.prior.set_execution(self.dtype, **self._execution)
        self._execution = None

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

    def _to_prior_input(self, image):
        """Map from ``input_range`` to [-1, 1] in float32, replicating one channel to the prior's channels."""
        low, high = self.input_range
        image = (image.float() - low) * (2 / (high - low)) - 1
        if image.shape[1] == 1 and self.prior.in_channels != 1:
            image = image.expand(-1, self.prior.in_channels, -1, -1)
        if image.shape[1] != self.prior.in_channels:
            raise ValueError(f'DiffLoss: the images have {image.shape[1]} channels but the prior takes '
                             f'{self.prior.in_channels}; use a prior trained on {image.shape[1]}-channel images.')
        return image

    def _shared_crop(self, pred, target):
        """The same random crop of both images, with sides that are multiples of the prior's size factor."""
        factor = self.prior.size_factor
        height, width = pred.shape[-2:]
        pad_h, pad_w = max(factor - height, 0), max(factor - width, 0)
        if pad_h or pad_w:
            pred = F.pad(pred, (0, pad_w, 0, pad_h), mode='replicate')
            target = F.pad(target, (0, pad_w, 0, pad_h), mode='replicate')
            height, width = pred.shape[-2:]
        crop_h = min(self.crop_size or height, height) // factor * factor
        crop_w = min(self.crop_size or width, width) // factor * factor
        top, left = (int(torch.randint(room + 1, (), generator=self._rng(), device=self._rng().device))
                     for room in (height - crop_h, width - crop_w))
        window = (..., slice(top, top + crop_h), slice(left, left + crop_w))
        return pred[window], target[window]

    def _shared_flip_and_shift(self, y0, x0):
        """The same random flips and circular shift (less than the prior's size factor) of both images."""
        rng = self._rng()
        draws = torch.randint(self.prior.size_factor, (4, ), generator=rng, device=rng.device).tolist()
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

    def _distance(self, pred_side, target_side, weights, y0):
        """Weighted MSE. Under ``score_difference`` its gradient reaches ``y0`` directly: 2 w (pred - target) / N."""
        difference = pred_side.float() - target_side.float()
        value = (weights * difference.square()).mean()
        if self.gradient == 'backprop':
            return value
        surrogate = (2 * weights * difference.detach() * y0).sum() / difference.numel()
        return value.detach() + surrogate - surrogate.detach()

    def terms(self, pred, target, current_iter=None):
        """Each weighted diffusion term, as an OrderedDict of scalar tensors (only the terms with weight > 0; none on
        the iterations the schedule skips). ``current_iter``: the training iteration (1-based), for the schedule."""
        if pred.shape != target.shape:
            raise ValueError(f'DiffLoss: pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape.')
        self._check_finite(pred, target)
        self._calls += 1
        scale = self.schedule.scale(self._calls if current_iter is None else current_iter, self._rng())
        if not scale:
            return OrderedDict()
        if self._execution is not None:
            self._set_execution()
        pred = self._within_range(pred, 'pred')
        pred, target = self._shared_crop(pred, self._within_range(target.detach(), 'target'))
        y0 = self._to_prior_input(pred).repeat(self.num_samples, 1, 1, 1)
        x0 = self._to_prior_input(target).repeat(self.num_samples, 1, 1, 1)
        if self.augment:
            y0, x0 = self._shared_flip_and_shift(y0, x0)
        rng = self._rng()
        t = torch.randint(self.t_range[0], self.t_range[1] + 1, (x0.shape[0], ), generator=rng, device=rng.device)
        noise = torch.randn(x0.shape, generator=rng, device=rng.device)
        x_t, y_t = self.prior.add_noise(x0, noise, t), self.prior.add_noise(y0, noise, t)
        prediction_name = f'l_diff_{self.space}'
        features_only = not self.weights[prediction_name]
        with torch.no_grad():
            eps_target, h_target = self.prior(x_t, t, features_only=features_only)
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.gradient == 'backprop'):
            eps_pred, h_pred = self.prior(y_t, t, features_only=features_only)
        if self.space == 'x0' and not features_only:
            eps_pred, eps_target = self.prior.to_x0(eps_pred, y_t, t), self.prior.to_x0(eps_target, x_t, t)
        weights = self._timestep_weights(t)
        compared = {prediction_name: (eps_pred, eps_target), 'l_diff_h': (h_pred, h_target)}
        return OrderedDict((name, self.loss_weight * weight * scale * self._distance(*compared[name], weights, y0))
                           for name, weight in self.weights.items() if weight > 0)

    def forward(self, pred, target):
        terms = self.terms(pred, target)
        return sum(terms.values()) if terms else pred.sum() * 0  # a skipped iteration: a zero that keeps the graph
