"""Flatten the GoPro deblurring set (Nah et al., CVPR 2017, ``GOPRO_Large``) into paired folders.

``GOPRO_Large/<split>/<sequence>/{blur,sharp}/<frame>.png`` becomes
``<output>/<split>/{blur,sharp}/<sequence>_<frame>.png`` (symlinks, or copies with ``--copy``). Then cut the
training pairs into 512 px crops (NAFNet's preparation)::

    python scripts/data_preparation/prepare_gopro.py --input path/to/GOPRO_Large --output datasets/GoPro
    python scripts/data_preparation/extract_subimages.py --input datasets/GoPro/train/blur \
        --output datasets/GoPro/train/blur_crops --crop-size 512 --step 256
    python scripts/data_preparation/extract_subimages.py --input datasets/GoPro/train/sharp \
        --output datasets/GoPro/train/sharp_crops --crop-size 512 --step 256

``--blur-folder blur_gamma`` takes the gamma-corrected blur instead (the benchmarks use ``blur``).
"""
import argparse
import os
from os import path as osp

from image_files import list_images, place_as_png


def prepare_gopro(input_root, output_root, blur_folder='blur', copy=False):
    """Write the flattened pairs; returns ``{split: number of pairs}``."""
    counts = {}
    for split in ('train', 'test'):
        split_root = osp.join(input_root, split)
        if not osp.isdir(split_root):
            raise FileNotFoundError(f'{split_root} is missing: --input must be the GOPRO_Large folder '
                                    '(holding train/ and test/).')
        counts[split] = 0
        for sequence in sorted(os.listdir(split_root)):
            blur_dir, sharp_dir = osp.join(split_root, sequence, blur_folder), osp.join(split_root, sequence, 'sharp')
            if not osp.isdir(sharp_dir):
                continue
            sharp_names = set(list_images(sharp_dir))
            for name in list_images(blur_dir):
                if name not in sharp_names:
                    raise FileNotFoundError(f'{osp.join(blur_dir, name)} has no sharp frame in {sharp_dir}.')
                output = f'{sequence}_{osp.splitext(name)[0]}.png'
                place_as_png(osp.join(blur_dir, name), osp.join(output_root, split, 'blur', output), copy)
                place_as_png(osp.join(sharp_dir, name), osp.join(output_root, split, 'sharp', output), copy)
                counts[split] += 1
        if not counts[split]:
            raise FileNotFoundError(f'no <sequence>/{blur_folder} and <sequence>/sharp folders in {split_root}.')
    return counts


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--input', required=True, help='the GOPRO_Large folder')
    parser.add_argument('--output', default='datasets/GoPro')
    parser.add_argument('--blur-folder', default='blur', choices=['blur', 'blur_gamma'])
    parser.add_argument('--copy', action='store_true', help='copy the frames instead of linking them')
    args = parser.parse_args()
    print(prepare_gopro(args.input, args.output, args.blur_folder, args.copy))


if __name__ == '__main__':
    main()
