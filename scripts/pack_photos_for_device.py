"""Pack a photo folder small enough to travel with a GPU call (64 MiB with the repository), keeping native pixels.

Each photo is centre-cropped to at most ``--max_side`` pixels a side (no resizing: a prior that learns fine texture
must see the photos' own pixels) and written as JPEG at ``--quality`` without chroma subsampling, which at 95 leaves
no blocking a 128 px crop shows. Prints the photos written and their size in all.

    python scripts/pack_photos_for_device.py --input datasets/prior_photos_v2/train \
        --output datasets/prior_photos_v2_device/train --max_side 1280
"""
import argparse
import os
from glob import glob
from os import path as osp

from PIL import Image

from basicsr_diffloss.data.image_files import IMAGE_SUFFIXES


def centre_crop(image, max_side):
    width, height = image.size
    new_width, new_height = min(width, max_side), min(height, max_side)
    left, top = (width - new_width) // 2, (height - new_height) // 2
    return image.crop((left, top, left + new_width, top + new_height))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--input', required=True, help='a folder of photos')
    parser.add_argument('--output', required=True, help='the folder to write the JPEGs to')
    parser.add_argument('--max_side', type=int, default=1280, help='centre crop to at most this side (default: 1280)')
    parser.add_argument('--quality', type=int, default=95, help='JPEG quality (default: 95)')
    args = parser.parse_args()
    paths = sorted(p for p in glob(osp.join(args.input, '*')) if p.endswith(IMAGE_SUFFIXES))
    if not paths:
        raise SystemExit(f"--input {args.input!r} holds no images: run scripts/fetch_license_checked_photos.py first.")
    os.makedirs(args.output, exist_ok=True)
    total = 0
    for path in paths:
        target = osp.join(args.output, osp.splitext(osp.basename(path))[0] + '.jpg')
        centre_crop(Image.open(path).convert('RGB'), args.max_side).save(target, 'JPEG', quality=args.quality,
                                                                         subsampling=0)
        total += osp.getsize(target)
    print(f'{len(paths)} photos in {args.output}: {total / 2**20:.1f} MiB')


if __name__ == '__main__':
    main()
