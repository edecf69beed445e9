"""DiffLoss: a frozen diffusion prior used as a training constraint (Tan & Zhao, arXiv 2406.19030)."""
import numbers
from collections import OrderedDict

import torch
import torch.distributed as dist
import torch.nn.functional as F
from basicsr.archs import build_network
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn

# Named settings of eps_weight, h_weight and t_range (None: the whole schedule). 'paper' is the authors' setting;
# their released code ran both UNet calls under torch.no_grad(), so these weights never sent a gradient and nobody
# tuned them. 'default' is chosen by measurement (docs/method.md).
PRESETS = {
    'default': dict(eps_weight=3.0, h_weight=0.0, t_range=(200, 800)),
    'paper': dict(eps_weight=1e-3, h_weight=1e-6, t_range=None),
}
DTYPES = {'fp32': torch.float32, 'float32': torch.float32, 'bf16': torch.bfloat16, 'bfloat16': torch.bfloat16,
          'fp16': torch.float16, 'float16': torch.float16}
OUT_OF_RANGE_MODES = ('clamp', 'error')
NONFINITE_MODES = ('error', 'skip')


class NonFiniteInputError(FloatingPointError):
    """pred or target holds NaN or Inf. Raised on every rank at once, so that all ranks can skip the step together."""


def _choice(option, value, choices):
    if value not in choices:
        raise ValueError(f"DiffLoss option '{option}': {value!r} is not one of {list(choices)}.")
    return value


def _number(option, value, minimum=None, integer=False):
    """``value`` as a float (or int), or a ValueError that names the option and says what is expected."""
    kind = 'an integer' if integer else 'a number'
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or (integer and value != int(value)):
        hint = ' (YAML reads 1e-3 as text: write 1.0e-3 or !!float 1e-3)' if isinstance(value, str) else ''
        raise ValueError(f"DiffLoss option '{option}': {value!r} is not {kind}{hint}.")
    if minimum is not None and value < minimum:
        raise ValueError(f"DiffLoss option '{option}': {value!r} must be >= {minimum}.")
    return int(value) if integer else float(value)


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
        preset (str): where ``eps_weight``, ``h_weight`` and ``t_range`` come from when not given: ``default``
            (3.0, 0.0, [200, 800]) or ``paper`` (1e-3, 1e-6, the whole schedule, e.g. [0, 999]). Default: ``default``.
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
        dtype (str): precision of the prior's weights and activations: ``fp32``, ``bf16`` or ``fp16``; noising and
            the loss reduction stay in float32. Default: ``fp32``.
        seed (int | None): seed of the loss's own random generator (crops, t, noise). Default: None, which takes
            ``torch.initial_seed()`` at construction; BasicSR seeds it with ``manual_seed + rank``, so every rank
            draws differently. Its state is saved in training states, so a resumed run draws what an
            uninterrupted one would.

    The defaults and how they were measured are in docs/method.md. ``forward(pred, target)`` returns the weighted sum;
    ``terms(pred, target)`` returns each weighted term (``l_diff_eps``, ``l_diff_h``) for logging.
    """

    def __init__(self, prior, preset='default', loss_weight=1.0, eps_weight=None, h_weight=None, t_range=None,
                 num_samples=1, crop_size=None, input_range=(0, 1), out_of_range='clamp', nonfinite='error',
                 dtype='fp32', seed=None):
        super().__init__()
        if preset not in PRESETS:
            raise ValueError(f"DiffLoss option 'preset': {preset!r} is not one of {sorted(PRESETS)}.")
        self.prior = prior if isinstance(prior, nn.Module) else build_network(dict(prior))
        if self.prior.unet.class_embedding is not None:
            raise ValueError("DiffLoss option 'prior': the prior is class-conditional, and DiffLoss gives it no class "
                             'labels; use an unconditional prior (e.g. guided_diffusion preset 256x256_diffusion_uncond).')
        last_t = self.prior.num_train_timesteps - 1
        eps_weight = PRESETS[preset]['eps_weight'] if eps_weight is None else eps_weight
        h_weight = PRESETS[preset]['h_weight'] if h_weight is None else h_weight
        t_range = (PRESETS[preset]['t_range'] or (0, last_t)) if t_range is None else t_range
        self.loss_weight = _number('loss_weight', loss_weight, minimum=0)
        self.weights = OrderedDict(l_diff_eps=_number('eps_weight', eps_weight, minimum=0),
                                   l_diff_h=_number('h_weight', h_weight, minimum=0))
        if not any(self.weights.values()):
            raise ValueError("DiffLoss options 'eps_weight' and 'h_weight' are both 0: set at least one above 0, or "
                             'remove the DiffLoss entry.')
        if len(t_range) != 2:
            raise ValueError(f"DiffLoss option 't_range': {t_range!r} must be [low, high].")
        low, high = (_number('t_range', value, minimum=0, integer=True) for value in t_range)
        if not low <= high <= last_t:
            raise ValueError(f"DiffLoss option 't_range': {list(t_range)} must satisfy 0 <= low <= high <= {last_t} "
                             f'(the prior has {last_t + 1} timesteps).')
        self.t_range = (low, high)
        self.num_samples = _number('num_samples', num_samples, minimum=1, integer=True)
        factor = self.prior.size_factor
        if crop_size is not None:
            crop_size = _number('crop_size', crop_size, minimum=factor, integer=True)
            if crop_size % factor:
                raise ValueError(f"DiffLoss option 'crop_size': {crop_size} is not a multiple of the prior's size "
                                 f'factor {factor}; use {crop_size // factor * factor} or '
                                 f'{(crop_size // factor + 1) * factor}.')
        self.crop_size = crop_size
        low_in, high_in = (_number('input_range', value) for value in input_range)
        if not low_in < high_in:
            raise ValueError(f"DiffLoss option 'input_range': {list(input_range)} must be [low, high] with low < high.")
        self.input_range = (low_in, high_in)
        self.out_of_range = _choice('out_of_range', out_of_range, OUT_OF_RANGE_MODES)
        self.nonfinite = _choice('nonfinite', nonfinite, NONFINITE_MODES)
        self.dtype = DTYPES[_choice('dtype', dtype, DTYPES)]
        # nn.Module.to: diffusers' own .to warns about fp32-only modules, and UNet2DModel has none.
        nn.Module.to(self.prior.unet, self.dtype)
        self.seed = torch.initial_seed() if seed is None else _number('seed', seed, minimum=0, integer=True)
        self._generator = None

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

    def terms(self, pred, target):
        """Each weighted diffusion term, as an OrderedDict of scalar tensors (only the terms with weight > 0)."""
        if pred.shape != target.shape:
            raise ValueError(f'DiffLoss: pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape.')
        self._check_finite(pred, target)
        pred, target = self._shared_crop(self._within_range(pred, 'pred'), self._within_range(target.detach(), 'target'))
        y0 = self._to_prior_input(pred).repeat(self.num_samples, 1, 1, 1)
        x0 = self._to_prior_input(target).repeat(self.num_samples, 1, 1, 1)
        rng = self._rng()
        t = torch.randint(self.t_range[0], self.t_range[1] + 1, (x0.shape[0], ), generator=rng, device=rng.device)
        noise = torch.randn(x0.shape, generator=rng, device=rng.device)
        with torch.no_grad():
            eps_target, h_target = self.prior(self.prior.add_noise(x0, noise, t).to(self.dtype), t)
        eps_pred, h_pred = self.prior(self.prior.add_noise(y0, noise, t).to(self.dtype), t)
        distances = dict(l_diff_eps=(eps_pred, eps_target), l_diff_h=(h_pred, h_target))
        return OrderedDict((name, self.loss_weight * weight * F.mse_loss(*(d.float() for d in distances[name])))
                           for name, weight in self.weights.items() if weight > 0)

    def forward(self, pred, target):
        return sum(self.terms(pred, target).values())
