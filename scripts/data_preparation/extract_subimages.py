"""Cut the images of a folder into overlapping sub-images, the way BasicSR prepares DIV2K (``<name>_s001.png``, ...).

Example (DIV2K, as in BasicSR's DatasetPreparation.md)::

    python scripts/data_preparation/extract_subimages.py --input datasets/DIV2K/DIV2K_train_HR \
        --output datasets/DIV2K/DIV2K_train_HR_sub --crop-size 480 --step 240 --thresh-size 0
    python scripts/data_preparation/extract_subimages.py --input datasets/DIV2K/DIV2K_train_LR_bicubic/X4 \
        --output datasets/DIV2K/DIV2K_train_LR_bicubic_X4_sub --crop-size 120 --step 60 --thresh-size 0

The LR crop and step are the HR ones divided by the scale, so sub-image ``k`` of an LR image matches sub-image ``k``
of its HR image. The LR files are renamed without their ``x4`` suffix so that both folders hold the same names.
"""
import argparse
import os
import re
from multiprocessing import Pool
from os import path as osp

import cv2
from image_files import list_images


def crop_starts(length, crop_size, step, thresh_size):
    """Start offsets along one side: every ``step``, plus a last crop flush with the end when more than
    ``thresh_size`` pixels would otherwise be left out."""
    starts = list(range(0, length - crop_size + 1, step))
    if not starts:
        return [0] if length >= crop_size else []
    if length - (starts[-1] + crop_size) > thresh_size:
        starts.append(length - crop_size)
    return starts


def sub_images(image, crop_size, step, thresh_size):
    """The sub-images of ``image`` in row-major order."""
    height, width = image.shape[:2]
    return [image[top:top + crop_size, left:left + crop_size]
            for top in crop_starts(height, crop_size, step, thresh_size)
            for left in crop_starts(width, crop_size, step, thresh_size)]


def output_stem(name, strip):
    """The file stem, without a trailing scale tag such as ``x4`` when ``strip`` (DIV2K's LR naming)."""
    stem = osp.splitext(name)[0]
    return re.sub(r'x\d+$', '', stem) if strip else stem


def write_sub_images(source, output_folder, stem, crop_size, step, thresh_size, compression_level):
    """Write the sub-images of one image as ``<stem>_s001.png``, ...; returns how many were written."""
    image = cv2.imread(source, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(f'cannot read {source} as an image.')
    crops = sub_images(image, crop_size, step, thresh_size)
    for index, crop in enumerate(crops, start=1):
        cv2.imwrite(osp.join(output_folder, f'{stem}_s{index:03d}.png'), crop,
                    [cv2.IMWRITE_PNG_COMPRESSION, compression_level])
    return len(crops)


def extract_subimages(input_folder, output_folder, crop_size, step, thresh_size=0, compression_level=3, n_thread=1,
                      strip_scale_tag=True):
    """Cut every image directly in ``input_folder`` into sub-images in ``output_folder`` (created; must not exist).

    Returns the number of sub-images written.
    """
    if step <= 0 or crop_size <= 0:
        raise ValueError(f'--crop-size ({crop_size}) and --step ({step}) must be positive.')
    names = list_images(input_folder)
    if osp.exists(output_folder):
        raise FileExistsError(f'{output_folder} already exists; remove it or choose another --output.')
    os.makedirs(output_folder)
    jobs = [(osp.join(input_folder, name), output_folder, output_stem(name, strip_scale_tag), crop_size, step,
             thresh_size, compression_level) for name in names]
    if n_thread > 1:
        with Pool(n_thread) as pool:
            counts = pool.starmap(write_sub_images, jobs)
    else:
        counts = [write_sub_images(*job) for job in jobs]
    return sum(counts)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--input', required=True, help='folder of images (not searched recursively)')
    parser.add_argument('--output', required=True, help='folder to create for the sub-images')
    parser.add_argument('--crop-size', type=int, required=True)
    parser.add_argument('--step', type=int, required=True)
    parser.add_argument('--thresh-size', type=int, default=0,
                        help='add a crop flush with the border when more than this many pixels are left (default 0)')
    parser.add_argument('--compression-level', type=int, default=3, help='PNG compression 0-9 (default 3)')
    parser.add_argument('--n-thread', type=int, default=4)
    parser.add_argument('--keep-scale-tag', action='store_true', help='keep a trailing x2/x3/x4 in the names')
    args = parser.parse_args()
    count = extract_subimages(args.input, args.output, args.crop_size, args.step, args.thresh_size,
                              args.compression_level, args.n_thread, not args.keep_scale_tag)
    print(f'{count} sub-images written to {args.output}')


if __name__ == '__main__':
    main()
