"""Pack a folder of images into an LMDB with BasicSR's own writer (``basicsr.utils.lmdb_util.make_lmdb_from_imgs``).

Keys are the file stems; the LMDB folder also receives BasicSR's ``meta_info.txt`` (``name.png (h,w,c) level``).
A paired LQ/GT set needs the same stems in both folders. Example::

    python scripts/data_preparation/create_lmdb.py --input datasets/DIV2K/DIV2K_train_HR_sub \
        --output datasets/DIV2K/DIV2K_train_HR_sub.lmdb
    python scripts/data_preparation/create_lmdb.py --input datasets/DIV2K/DIV2K_train_LR_bicubic_X4_sub \
        --output datasets/DIV2K/DIV2K_train_LR_bicubic_X4_sub.lmdb
"""
import argparse
from os import path as osp

from image_files import list_images
from PIL import Image

import basicsr_diffloss  # noqa: F401  (repairs basicsr 1.4.2 before its import)
from basicsr.utils.lmdb_util import make_lmdb_from_imgs


def map_size_for(folder, names):
    """An upper bound of the LMDB size: the raw pixel bytes plus PNG and page overheads."""
    raw = 0
    for name in names:
        with Image.open(osp.join(folder, name)) as image:
            raw += image.width * image.height * len(image.getbands())
    return int(raw * 1.2) + 16 * 1024 * len(names) + 1024**2


def create_lmdb(input_folder, lmdb_path, compress_level=1, n_thread=1):
    """Write every image directly in ``input_folder`` to ``lmdb_path`` (must end in .lmdb and not exist)."""
    if not lmdb_path.endswith('.lmdb'):
        raise ValueError(f"--output '{lmdb_path}' must end with .lmdb (BasicSR's LMDB backend requires it).")
    if osp.exists(lmdb_path):
        raise FileExistsError(f'{lmdb_path} already exists; remove it or choose another --output.')
    names = list_images(input_folder)
    keys = [osp.splitext(name)[0] for name in names]
    if len(set(keys)) != len(keys):
        raise ValueError(f'{input_folder} holds files with the same stem and different extensions; the LMDB keys '
                         '(stems) must be unique.')
    make_lmdb_from_imgs(input_folder, lmdb_path, names, keys, compress_level=compress_level,
                        multiprocessing_read=n_thread > 1, n_thread=n_thread,
                        map_size=map_size_for(input_folder, names))
    return keys


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--input', required=True, help='folder of images (not searched recursively)')
    parser.add_argument('--output', required=True, help='LMDB folder to create, ending in .lmdb')
    parser.add_argument('--compress-level', type=int, default=1, help='PNG compression 0-9 inside the LMDB (default 1)')
    parser.add_argument('--n-thread', type=int, default=1, help='> 1 reads all images into memory in parallel first')
    args = parser.parse_args()
    create_lmdb(args.input, args.output, args.compress_level, args.n_thread)


if __name__ == '__main__':
    main()
