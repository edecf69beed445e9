"""Write a BasicSR meta-info file for a folder: one ``name.png (h,w,c)`` line per image, sorted.

PairedImageDataset's ``meta_info_file`` option reads the names from it instead of scanning the folder (the LQ name
is ``filename_tmpl.format(stem) + ext``). Example::

    python scripts/data_preparation/make_meta_info.py --input datasets/DIV2K/DIV2K_train_HR_sub \
        --output datasets/meta_info/meta_info_DIV2K800sub_GT.txt
"""
import argparse
import os
from os import path as osp

from image_files import list_images
from PIL import Image


def make_meta_info(input_folder, meta_info_path):
    """Write the meta-info file and return its lines."""
    lines = []
    for name in list_images(input_folder):
        with Image.open(osp.join(input_folder, name)) as image:
            lines.append(f'{name} ({image.height},{image.width},{len(image.getbands())})')
    os.makedirs(osp.dirname(meta_info_path) or '.', exist_ok=True)
    with open(meta_info_path, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--input', required=True, help='folder of GT images')
    parser.add_argument('--output', required=True, help='meta-info text file to write')
    args = parser.parse_args()
    print(f'{len(make_meta_info(args.input, args.output))} lines written to {args.output}')


if __name__ == '__main__':
    main()
