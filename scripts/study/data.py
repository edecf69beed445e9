"""The study's fixed photo split, its tasks' degradations, and the batches every setting of a seed shares."""
import os
from os import path as osp

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from basicsr.utils import scandir

from basicsr_diffloss.data.degradations import Haze, Rain
from basicsr_diffloss.data.image_files import IMAGE_SUFFIXES

# Validation photos, fixed by name: none of them trained the shipped default prior (see its MODEL_CARD.md).
VALIDATION_PHOTOS = ('mate_Aqua', 'mate_Dune', 'mate_Garden', 'mate_LadyBird', 'mate_Storm', 'mate_Wood',
                     'mate_YellowFlower', 'lomiri_Dragonfly_by_Bolly', 'lomiri_greentock_by_Peter_Nerlich',
                     'plasma_contents')


def load_photos(folder, scale=0.5):
    """Every image of ``folder`` (``IMAGE_SUFFIXES``) as float32 RGB (H, W, 3) in [0, 1], resized by ``scale``
    (area filter)."""
    photos = {}
    for path in sorted(scandir(folder, suffix=IMAGE_SUFFIXES, full_path=True)):
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None:
            continue
        if scale != 1:
            image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        photos[osp.splitext(osp.basename(path))[0]] = cv2.cvtColor(image, cv2.COLOR_BGR2RGB).astype(np.float32) / 255
    if not photos:
        raise FileNotFoundError(f"no photos in '{folder}' (expected files ending in one of {IMAGE_SUFFIXES}).")
    return photos


def split_photos(photos):
    """``(train, validation)`` dicts; validation holds the ``VALIDATION_PHOTOS`` that are present."""
    validation = {name: image for name, image in photos.items() if name in VALIDATION_PHOTOS}
    train = {name: image for name, image in photos.items() if name not in VALIDATION_PHOTOS}
    if not validation or not train:
        raise ValueError(f'the photo split needs training photos and some of {VALIDATION_PHOTOS}; found '
                         f'{sorted(photos)}.')
    return train, validation


TASKS = ('sr4', 'dn25', 'll', 'haze', 'rain')
# The package's degradations behind the haze and rain tasks, with their documented default options (docs/tasks.md).
PACKAGE_DEGRADATIONS = {'haze': Haze, 'rain': Rain}


class Task:
    """A restoration task: ``sr4`` (bicubic x4 down-sampling, antialiased), ``dn25`` (Gaussian noise, sigma 25/255),
    ``ll`` (low light: ``channel_gain * gain * x ** gamma`` per image, then shot and read noise; the ranges are
    ``LOW_LIGHT``), ``haze`` or ``rain`` (DegradedImageDataset's ``haze`` and ``rain`` degradations at their default
    options, drawn per image; see ``PACKAGE_DEGRADATIONS``).

    Attributes: ``scale`` (output / input size), ``gt_patch`` (training GT patch side), ``crop_border`` (pixels left
    out of PSNR/SSIM/NIQE at each side).
    """

    # gain, gamma, per-channel sensor gain, shot noise (0-255 levels per photon) and read noise (0-255 std) ranges
    LOW_LIGHT = dict(gain=(0.08, 0.35), gamma=(1.6, 2.8), channel_gain=(0.85, 1.15), shot_noise=(0.5, 2.0),
                     read_noise=(1.0, 3.0))

    def __init__(self, name, gt_patch=None):
        if name not in TASKS:
            raise ValueError(f"study task '{name}' is not one of {list(TASKS)}.")
        self.name = name
        self.scale = 4 if name == 'sr4' else 1
        self.gt_patch = gt_patch or {'dn25': 48}.get(name, 64)
        self.crop_border = 4 if name == 'sr4' else 0
        self.package_degradation = (PACKAGE_DEGRADATIONS[name](f'study task {name}')
                                    if name in PACKAGE_DEGRADATIONS else None)

    def degrade(self, gt, generator):
        """The LQ images of a (B, 3, H, W) batch in [0, 1]; noise comes from ``generator``."""
        if self.name == 'sr4':
            size = (gt.shape[-2] // 4, gt.shape[-1] // 4)
            return F.interpolate(gt, size=size, mode='bicubic', antialias=True, align_corners=False).clamp(0, 1)
        if self.name == 'dn25':
            return gt + torch.randn(gt.shape, generator=generator) * (25 / 255)
        if self.package_degradation is not None:
            return self._package_degradation(gt, generator)
        return self._low_light(gt, generator)

    def _package_degradation(self, gt, generator):
        """Each image degraded by the package's degradation with a numpy generator seeded from ``generator``."""
        seeds = torch.randint(2**62, (gt.shape[0], ), generator=generator).tolist()
        images = gt.clamp(0, 1).permute(0, 2, 3, 1).numpy()
        return torch.stack([
            torch.from_numpy(np.ascontiguousarray(self.package_degradation(image, np.random.default_rng(seed))))
            for image, seed in zip(images, seeds)
        ]).permute(0, 3, 1, 2)

    def _low_light(self, gt, generator):
        def draw(name, shape):
            low, high = self.LOW_LIGHT[name]
            return low + (high - low) * torch.rand(shape, generator=generator)

        batch = gt.shape[0]
        gain = draw('gain', (batch, 1, 1, 1)) * draw('channel_gain', (batch, 3, 1, 1))
        dark = gain * gt.clamp(0, 1)**draw('gamma', (batch, 1, 1, 1))
        variance = dark * draw('shot_noise', (batch, 1, 1, 1)) / 255 + (draw('read_noise', (batch, 1, 1, 1)) / 255)**2
        return (dark + variance.sqrt() * torch.randn(gt.shape, generator=generator)).clamp(0, 1)

    def start_output(self, lq, gt_shape):
        """What a restorer outputs early in training, to calibrate loss weights: the bicubic upscale, or the input."""
        if self.name == 'sr4':
            return F.interpolate(lq, size=gt_shape[-2:], mode='bicubic', align_corners=False).clamp(0, 1)
        return lq.clamp(0, 1)


def training_batches(photos, task, batch_size, seed):
    """An endless iterator of ``(lq, gt)``: random GT patches with random flips, the same for a given seed."""
    generator = torch.Generator().manual_seed(seed)
    images = [torch.from_numpy(image).permute(2, 0, 1) for image in photos.values()]
    size = task.gt_patch
    while True:
        patches = []
        for index in torch.randint(len(images), (batch_size, ), generator=generator).tolist():
            image = images[index]
            top = int(torch.randint(image.shape[1] - size + 1, (), generator=generator))
            left = int(torch.randint(image.shape[2] - size + 1, (), generator=generator))
            patch = image[:, top:top + size, left:left + size]
            flips = [dim for dim, draw in zip((1, 2), torch.randint(2, (2, ), generator=generator).tolist()) if draw]
            patches.append(patch.flip(flips) if flips else patch)
        gt = torch.stack(patches)
        yield task.degrade(gt, generator), gt


def validation_pairs(photos, task, size=None, seed=0):
    """``{name: (lq, gt)}``: each whole photo (``size`` None; trimmed at the bottom and right to a multiple of the
    task's scale) or its central ``size`` square, and its fixed degradation, as (1, 3, H, W)."""
    generator = torch.Generator().manual_seed(seed)
    pairs = {}
    for name, image in photos.items():
        height, width = image.shape[:2]
        if size is None:
            top, left = 0, 0
            crop_h, crop_w = height // task.scale * task.scale, width // task.scale * task.scale
        else:
            top, left = (height - size) // 2, (width - size) // 2
            crop_h = crop_w = size
        patch = image[top:top + crop_h, left:left + crop_w]
        gt = torch.from_numpy(np.ascontiguousarray(patch)).permute(2, 0, 1)[None]
        pairs[name] = (task.degrade(gt, generator), gt)
    return pairs


def save_rgb(path, image):
    """Write a (1, 3, H, W) tensor in [0, 1] as an 8-bit PNG; return the uint8 BGR array."""
    array = (image[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    os.makedirs(osp.dirname(path), exist_ok=True)
    cv2.imwrite(path, array)
    return array
