"""Pictures of what the DiffLoss prior makes of the restored image and of the ground truth, drawn at validation."""
import os
from os import path as osp

import cv2
import numpy as np
import torch
import torch.nn.functional as F

DEFAULT_TIMESTEPS = (100, 400, 700)
MIN_TILE = 128  # tiles are enlarged (nearest) to at least this size so that their captions fit


def _tile(image, caption, size):
    """A uint8 BGR tile of ``image`` (3, H, W) in [-1, 1], enlarged to ``size`` (h, w), with a caption strip above."""
    rgb = ((image.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
    rgb = np.repeat(rgb, 3, axis=2) if rgb.shape[2] == 1 else rgb
    bgr = cv2.resize(np.ascontiguousarray(rgb[..., ::-1]), size[::-1], interpolation=cv2.INTER_NEAREST)
    strip = np.full((22, size[1], 3), 255, np.uint8)
    font_scale = 0.45
    while font_scale > 0.25 and cv2.getTextSize(caption, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)[0][0] > size[1] - 8:
        font_scale -= 0.05  # shrink long captions to the tile
    cv2.putText(strip, caption, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([strip, bgr], axis=0)


class PriorDiagnostics:
    """For a restored image y and its ground truth x, at a few t with one shared noise n, the prior's view of both.

    Each row shows, for one t: ``y_t`` (the noised output), the prior's x0 estimate from ``y_t`` and its x0 estimate
    from ``x_t`` (the noised GT, same noise), x0 = (z_t - sqrt(1 - abar_t) eps(z_t, t)) / sqrt(abar_t). A first row
    shows the output and the GT. A prior that helps turns both into similar, plausible images; one that
    hallucinates invents structure in the estimate from ``y_t`` that the GT's estimate does not have.

    Args:
        diffloss (DiffLoss): the training loss; its ``prior``, ``input_range`` and ``dtype`` are used.
        timesteps (list[int]): the t of the rows. Default: [100, 400, 700].
        every (int): draw at every N-th validation of a dataset (1: at each). Default: 1.
        max_images (int): draw the first N images of each validation set. Default: 4.
        crop_size (int | None): draw the centre square of at most this size (rounded down to the prior's size
            factor); None: the whole image. Default: 256.
        seed (int): seed of the noise, the same at every validation so that pictures compare across iterations.
            Default: 0.
    """

    def __init__(self, diffloss, timesteps=DEFAULT_TIMESTEPS, every=1, max_images=4, crop_size=256, seed=0):
        self.prior = diffloss.prior
        self.input_range = diffloss.input_range
        self.dtype = diffloss.dtype
        last = self.prior.num_train_timesteps - 1
        if not timesteps or any(not isinstance(t, int) or not 0 <= t <= last for t in timesteps):
            raise ValueError(f'val.prior_diagnostics.timesteps: {timesteps!r} must be a list of integers in '
                             f'[0, {last}] (the prior has {last + 1} timesteps).')
        for name, value, minimum in (('every', every, 1), ('max_images', max_images, 1), ('seed', seed, 0)):
            if not isinstance(value, int) or value < minimum:
                raise ValueError(f'val.prior_diagnostics.{name}: {value!r} must be an integer >= {minimum}.')
        if crop_size is not None and (not isinstance(crop_size, int) or crop_size < self.prior.size_factor):
            raise ValueError(f'val.prior_diagnostics.crop_size: {crop_size!r} must be ~ or an integer >= '
                             f"{self.prior.size_factor} (the prior's size factor).")
        self.timesteps, self.every, self.max_images = list(timesteps), every, max_images
        self.crop_size, self.seed = crop_size, seed

    def _prepare(self, image):
        """Centre crop to a multiple of the prior's size factor, mapped to [-1, 1] with the prior's channels."""
        factor = self.prior.size_factor
        height, width = image.shape[-2:]
        pad_h, pad_w = max(factor - height, 0), max(factor - width, 0)
        if pad_h or pad_w:
            image = F.pad(image, (0, pad_w, 0, pad_h), mode='replicate')
            height, width = image.shape[-2:]
        side_h = min(self.crop_size or height, height) // factor * factor
        side_w = min(self.crop_size or width, width) // factor * factor
        top, left = (height - side_h) // 2, (width - side_w) // 2
        image = image[..., top:top + side_h, left:left + side_w].float()
        low, high = self.input_range
        image = (image.clamp(low, high) - low) * (2 / (high - low)) - 1
        return image.expand(-1, self.prior.in_channels, -1, -1) if image.shape[1] == 1 else image

    def _x0_estimate(self, z_t, t):
        eps = self.prior(z_t.to(self.dtype), t)[0].float()
        abar = self.prior.abar(t)
        return (z_t - (1 - abar).sqrt() * eps) / abar.sqrt()

    @torch.no_grad()
    def picture(self, output, gt):
        """The diagnostics of the first image of ``output`` and ``gt`` (N, C, H, W), as a uint8 BGR array."""
        y0, x0 = self._prepare(output[:1]), self._prepare(gt[:1])
        device = self.prior.alphas_cumprod.device
        y0, x0 = y0.to(device), x0.to(device)
        scale = max(1, -(-MIN_TILE // min(y0.shape[-2:])))
        size = (y0.shape[-2] * scale, y0.shape[-1] * scale)
        generator = torch.Generator().manual_seed(self.seed)
        blank = torch.ones_like(y0[0])
        rows = [[_tile(y0[0], 'output', size), _tile(x0[0], 'GT', size), _tile(blank, '', size)]]
        for step in self.timesteps:
            t = torch.full((1, ), step, device=device, dtype=torch.long)
            noise = torch.randn(y0.shape, generator=generator).to(device)
            y_t, x_t = self.prior.add_noise(y0, noise, t), self.prior.add_noise(x0, noise, t)
            rows.append([_tile(y_t[0], f't={step}: y_t', size),
                         _tile(self._x0_estimate(y_t, t)[0], 'x0 from y_t', size),
                         _tile(self._x0_estimate(x_t, t)[0], 'x0 from x_t (GT)', size)])
        gap = np.full((rows[0][0].shape[0], 4, 3), 255, np.uint8)
        lines = [np.concatenate([part for tile in row for part in (tile, gap)][:-1], axis=1) for row in rows]
        return np.concatenate(lines, axis=0)

    def save(self, output, gt, path):
        """Write :meth:`picture` as a PNG at ``path`` (folders are created)."""
        os.makedirs(osp.dirname(path), exist_ok=True)
        cv2.imwrite(path, self.picture(output, gt))
