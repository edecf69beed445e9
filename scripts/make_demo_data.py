"""Build the demo dataset from scikit-image's bundled photos (they come with the install; no download).

Writes, under ``--output`` (default ``datasets/demo``):
    train/gt, val/gt              clean photos, sides cropped to multiples of 4
    train/lq_x4, val/lq_x4        x4 bicubic downscaling (BasicSR's MATLAB-like imresize)
    train/lq_noise25, ...         additive Gaussian colour noise, sigma 25/255, seeded
Training photos: astronaut, coffee, rocket. Validation photo (never used for training): chelsea.
"""
import argparse
import os
from os import path as osp

import cv2
import numpy as np
import basicsr_diffloss  # noqa: F401  (repairs basicsr 1.4.2 before its import)
from basicsr.utils.matlab_functions import imresize
from skimage import data

SPLITS = {'train': ('astronaut', 'coffee', 'rocket'), 'val': ('chelsea', )}
SCALE = 4
NOISE_SIGMA = 25


def degrade(gt_rgb, rng):
    """The x4 bicubic and sigma-25 noisy versions of a uint8 RGB image."""
    gt = gt_rgb.astype(np.float32) / 255
    lq_x4 = np.clip(imresize(gt, 1 / SCALE), 0, 1)
    noisy = np.clip(gt + rng.normal(0, NOISE_SIGMA / 255, gt.shape), 0, 1)
    return {'lq_x4': lq_x4, f'lq_noise{NOISE_SIGMA}': noisy}


def write_png(path, rgb_float_or_uint8):
    image = rgb_float_or_uint8
    if image.dtype != np.uint8:
        image = (image * 255).round().astype(np.uint8)
    os.makedirs(osp.dirname(path), exist_ok=True)
    cv2.imwrite(path, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--output', default='datasets/demo', help='output folder (default: datasets/demo)')
    parser.add_argument('--seed', type=int, default=0, help='seed of the added noise (default: 0)')
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    for split, names in SPLITS.items():
        for name in names:
            gt = getattr(data, name)()
            gt = gt[:gt.shape[0] // SCALE * SCALE, :gt.shape[1] // SCALE * SCALE]
            write_png(osp.join(args.output, split, 'gt', f'{name}.png'), gt)
            for kind, image in degrade(gt, rng).items():
                write_png(osp.join(args.output, split, kind, f'{name}.png'), image)
    print(f'demo dataset written to {args.output}: train {SPLITS["train"]}, val {SPLITS["val"]}')


if __name__ == '__main__':
    main()
