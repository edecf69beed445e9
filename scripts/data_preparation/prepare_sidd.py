"""Prepare SIDD (Abdelhamed et al., CVPR 2018) for real-noise denoising, as NAFNet and Restormer use it.

Training: the sRGB pairs of SIDD-Medium (``SIDD_Medium_Srgb/Data/<scene>/{GT,NOISY}_SRGB_<nnn>.PNG``, 160 scenes x
2) are cut into 512 px crops with step 384::

    <output>/train/gt_crops/<scene id>_<nnn>_s001.png    <output>/train/input_crops/<scene id>_<nnn>_s001.png

Validation: the 1280 blocks of 256 px in ``ValidationGtBlocksSrgb.mat`` / ``ValidationNoisyBlocksSrgb.mat``
(40 images x 32 blocks, RGB uint8) become ``<output>/val/{gt,input}/<image>_<block>.png``. Example::

    python scripts/data_preparation/prepare_sidd.py --train path/to/SIDD_Medium_Srgb/Data \
        --val-gt path/to/ValidationGtBlocksSrgb.mat --val-noisy path/to/ValidationNoisyBlocksSrgb.mat \
        --output datasets/SIDD

Either part may be given alone.
"""
import argparse
import os
import re
from os import path as osp

import cv2
import numpy as np
from extract_subimages import write_sub_images
from scipy.io import loadmat

PAIR = re.compile(r'^GT_SRGB_(\d+)\.png$', re.IGNORECASE)


def prepare_sidd_train(data_root, output_root, crop_size=512, step=384, compression_level=3):
    """Crop every GT/NOISY pair of every scene folder; returns the number of crop pairs."""
    gt_out, input_out = osp.join(output_root, 'train', 'gt_crops'), osp.join(output_root, 'train', 'input_crops')
    os.makedirs(gt_out, exist_ok=True)
    os.makedirs(input_out, exist_ok=True)
    total = 0
    for scene in sorted(os.listdir(data_root)):
        scene_dir = osp.join(data_root, scene)
        if not osp.isdir(scene_dir):
            continue
        for name in sorted(os.listdir(scene_dir)):
            match = PAIR.match(name)
            if not match:
                continue
            noisy = [other for other in os.listdir(scene_dir) if other.upper() == f'NOISY_SRGB_{match.group(1)}.PNG']
            if not noisy:
                raise FileNotFoundError(f'{osp.join(scene_dir, name)} has no NOISY_SRGB_{match.group(1)}.PNG '
                                        'beside it.')
            stem = f'{scene.split("_")[0]}_{match.group(1)}'
            for source, folder in ((name, gt_out), (noisy[0], input_out)):
                count = write_sub_images(osp.join(scene_dir, source), folder, stem, crop_size, step, 0,
                                         compression_level)
            total += count
    if not total:
        raise FileNotFoundError(f'no <scene>/GT_SRGB_<nnn>.PNG files in {data_root}: --train must be '
                                'SIDD_Medium_Srgb/Data.')
    return total


def blocks(mat_path):
    """The (images, blocks, 256, 256, 3) uint8 RGB array stored in a SIDD validation .mat file."""
    arrays = [value for key, value in loadmat(mat_path).items() if not key.startswith('__')]
    if len(arrays) != 1 or arrays[0].ndim != 5:
        raise ValueError(f'{mat_path} is not a SIDD blocks file (one 5-D array expected).')
    return arrays[0]


def prepare_sidd_val(gt_mat, noisy_mat, output_root):
    """Write every validation block as a PNG pair; returns the number of pairs."""
    gt, noisy = blocks(gt_mat), blocks(noisy_mat)
    if gt.shape != noisy.shape:
        raise ValueError(f'{gt_mat} {gt.shape} and {noisy_mat} {noisy.shape} differ in shape.')
    for kind, array in (('gt', gt), ('input', noisy)):
        folder = osp.join(output_root, 'val', kind)
        os.makedirs(folder, exist_ok=True)
        for image in range(array.shape[0]):
            for block in range(array.shape[1]):
                rgb = np.ascontiguousarray(array[image, block])
                cv2.imwrite(osp.join(folder, f'{image:04d}_{block:02d}.png'), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return gt.shape[0] * gt.shape[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--train', help='the SIDD_Medium_Srgb/Data folder')
    parser.add_argument('--val-gt', help='ValidationGtBlocksSrgb.mat')
    parser.add_argument('--val-noisy', help='ValidationNoisyBlocksSrgb.mat')
    parser.add_argument('--output', default='datasets/SIDD')
    args = parser.parse_args()
    if not (args.train or args.val_gt):
        parser.error('give --train, or --val-gt and --val-noisy, or all three.')
    if args.train:
        print(f'{prepare_sidd_train(args.train, args.output)} training crop pairs written')
    if args.val_gt or args.val_noisy:
        if not (args.val_gt and args.val_noisy):
            parser.error('--val-gt and --val-noisy go together.')
        print(f'{prepare_sidd_val(args.val_gt, args.val_noisy, args.output)} validation pairs written')


if __name__ == '__main__':
    main()
