"""DiffLoss: a frozen diffusion prior used as a training constraint (Tan & Zhao, arXiv 2406.19030)."""
import numbers
from collections import OrderedDict

import torch
import torch.nn.functional as F
from basicsr.archs import build_network
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn

# The authors' weights. Their released code ran both UNet calls under torch.no_grad(), so these terms never sent a
# gradient and nobody tuned them; they are documented here, not used as defaults (see docs/method.md).
PAPER_EPS_WEIGHT = 1e-3
PAPER_H_WEIGHT = 1e-6


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
        loss_weight (float): multiplies every term. Default: 1.0.
        eps_weight (float): weight of ``mean((eps(y_t) - eps(x_t))^2)``. Default: 5.0. The paper used 1e-3.
        h_weight (float): weight of ``mean((h(y_t) - h(x_t))^2)``. Default: 0.0 (off). The paper used 1e-6.
        t_range (list[int]): ``[low, high]``, both inclusive; t is drawn uniformly from it, one per image and draw.
            Default: [200, 800]. The paper drew from the whole schedule, [0, 999].
        num_samples (int): noise and timestep draws per image, averaged. Default: 1.
        crop_size (int | None): compare the same random ``crop_size`` square of both images (clipped to the image);
            must be a multiple of the prior's size factor (2^(levels-1)). Default: None, the whole image. Images whose
            sides are not multiples of the factor are cropped down to the nearest multiple (padded up if smaller).
        input_range (list[float]): the range of ``pred`` and ``target``, mapped to the prior's [-1, 1].
            Default: [0, 1].

    The defaults and how they were measured are in docs/method.md. ``forward(pred, target)`` returns the weighted sum;
    ``terms(pred, target)`` returns each weighted term (``l_diff_eps``, ``l_diff_h``) for logging.
    """

    def __init__(self, prior, loss_weight=1.0, eps_weight=5.0, h_weight=0.0, t_range=(200, 800), num_samples=1,
                 crop_size=None, input_range=(0, 1)):
        super().__init__()
        self.prior = prior if isinstance(prior, nn.Module) else build_network(dict(prior))
        self.loss_weight = _number('loss_weight', loss_weight, minimum=0)
        self.weights = OrderedDict(l_diff_eps=_number('eps_weight', eps_weight, minimum=0),
                                   l_diff_h=_number('h_weight', h_weight, minimum=0))
        if not any(self.weights.values()):
            raise ValueError("DiffLoss options 'eps_weight' and 'h_weight' are both 0: set at least one above 0, or "
                             'remove the DiffLoss entry.')
        last_t = self.prior.num_train_timesteps - 1
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
        top = int(torch.randint(height - crop_h + 1, ()))
        left = int(torch.randint(width - crop_w + 1, ()))
        window = (..., slice(top, top + crop_h), slice(left, left + crop_w))
        return pred[window], target[window]

    def terms(self, pred, target):
        """Each weighted diffusion term, as an OrderedDict of scalar tensors (only the terms with weight > 0)."""
        if pred.shape != target.shape:
            raise ValueError(f'DiffLoss: pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape.')
        pred, target = self._shared_crop(pred, target)
        y0 = self._to_prior_input(pred).repeat(self.num_samples, 1, 1, 1)
        x0 = self._to_prior_input(target.detach()).repeat(self.num_samples, 1, 1, 1)
        t = torch.randint(self.t_range[0], self.t_range[1] + 1, (x0.shape[0], ), device=x0.device)
        noise = torch.randn_like(x0)
        with torch.no_grad():
            eps_target, h_target = self.prior(self.prior.add_noise(x0, noise, t), t)
        eps_pred, h_pred = self.prior(self.prior.add_noise(y0, noise, t), t)
        distances = dict(l_diff_eps=(eps_pred, eps_target), l_diff_h=(h_pred, h_target))
        return OrderedDict((name, self.loss_weight * weight * F.mse_loss(*(d.float() for d in distances[name])))
                           for name, weight in self.weights.items() if weight > 0)

    def forward(self, pred, target):
        return sum(self.terms(pred, target).values())
