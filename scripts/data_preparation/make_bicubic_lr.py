"""Make an SR test set from HR images: ``GTmod<mod>`` (HR cropped to a multiple of ``mod``) and ``LRbicx<scale>``
(MATLAB-style bicubic down-scaling, BasicSR's ``basicsr.utils.matlab_functions.imresize``), the layout of BasicSR's
packaged Set5 / Set14 / BSD100 / Urban100. Example::

    python scripts/data_preparation/make_bicubic_lr.py --input path/to/Set5_HR --output datasets/Set5 --scale 4
"""
import argparse
import os
from os import path as osp

import cv2
import numpy as np
from image_files import list_images

import basicsr_diffloss  # noqa: F401  (repairs basicsr 1.4.2 before its import)
from basicsr.data.transforms import mod_crop
from basicsr.utils.matlab_functions import imresize


def make_bicubic_lr(input_folder, output_folder, scale, mod=12):
    """Write ``output/GTmod<mod>/<stem>.png`` and ``output/LRbicx<scale>/<stem>.png``; returns the stems."""
    if mod % scale:
        raise ValueError(f'--mod {mod} must be a multiple of --scale {scale}.')
    gt_folder, lr_folder = osp.join(output_folder, f'GTmod{mod}'), osp.join(output_folder, f'LRbicx{scale}')
    os.makedirs(gt_folder, exist_ok=True)
    os.makedirs(lr_folder, exist_ok=True)
    stems = []
    for name in list_images(input_folder):
        image = cv2.imread(osp.join(input_folder, name), cv2.IMREAD_COLOR)
        gt = mod_crop(image, mod)
        lr = imresize(gt.astype(np.float32) / 255, 1 / scale)
        stem = osp.splitext(name)[0]
        cv2.imwrite(osp.join(gt_folder, f'{stem}.png'), gt)
        cv2.imwrite(osp.join(lr_folder, f'{stem}.png'), (np.clip(lr, 0, 1) * 255).round().astype(np.uint8))
        stems.append(stem)
    return stems


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--input', required=True, help='folder of HR images')
    parser.add_argument('--output', required=True, help='dataset folder receiving GTmod<mod>/ and LRbicx<scale>/')
    parser.add_argument('--scale', type=int, default=4)
    parser.add_argument('--mod', type=int, default=12, help='crop HR sides to a multiple of this (default 12)')
    args = parser.parse_args()
    print(f'{len(make_bicubic_lr(args.input, args.output, args.scale, args.mod))} images written to {args.output}')


if __name__ == '__main__':
    main()
