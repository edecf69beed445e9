"""Pictures of what the DiffLoss prior makes of the restored image and of the ground truth, drawn at validation."""
import os
from os import path as osp

import cv2
import numpy as np
import torch

from ..options import OptionError, number, option_error

OWNER = 'val.prior_diagnostics'
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
        diffloss (DiffLoss): the training loss; its ``prior`` and ``input_range`` are used.
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
        if self.prior.encoder is not None:
            raise OptionError(f"{OWNER} draws the prior's x0 estimates as images; a latent (Stable Diffusion-family) "
                              "prior's would need its VAE decoder, which DiffLoss never loads: remove "
                              'val.prior_diagnostics.')
        self.input_range = diffloss.input_range
        last = self.prior.num_train_timesteps - 1
        if not isinstance(timesteps, (list, tuple)) or not timesteps:
            raise option_error(OWNER, 'timesteps', timesteps, f'must be a list of integers in [0, {last}].')
        self.timesteps = [number(OWNER, 'timesteps', t, minimum=0, maximum=last, integer=True) for t in timesteps]
        self.every = number(OWNER, 'every', every, minimum=1, integer=True)
        self.max_images = number(OWNER, 'max_images', max_images, minimum=1, integer=True)
        self.seed = number(OWNER, 'seed', seed, minimum=0, integer=True)
        self.crop_size = None if crop_size is None else number(OWNER, 'crop_size', crop_size,
                                                                 minimum=self.prior.size_factor, integer=True)

    def _prepare(self, image):
        """The centre window (sides multiples of the prior's size factor) in the prior's [-1, 1] and channels."""
        low, high = self.input_range
        image, = self.prior.fit_size([image.float().clamp(low, high)], self.crop_size,
                                     lambda room_h, room_w: (room_h // 2, room_w // 2))
        return self.prior.to_input(image, self.input_range)

    def _x0_estimate(self, z_t, t):
        return self.prior.to_x0(self.prior(z_t, t)[0], z_t, t)

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
