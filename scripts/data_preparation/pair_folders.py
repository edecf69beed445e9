"""Give paired images the same file name in two folders, as BasicSR's PairedImageDataset needs.

Each input image is matched to its target by a key that a regular expression extracts from both names (group 1).
The pair is written as ``<input-out>/<input stem>.png`` and ``<target-out>/<input stem>.png`` (symlinks to PNG
sources, or copies with ``--copy``; other formats are re-encoded losslessly as PNG). Several inputs may share one
target (RESIDE: ten hazy versions of each clear image). Examples::

    # RESIDE ITS: hazy/1_1_0.90179.png -> clear/1.png
    python scripts/data_preparation/pair_folders.py --input datasets/RESIDE/ITS/hazy \
        --target datasets/RESIDE/ITS/clear --input-key '^([^_]+)_' \
        --input-out datasets/RESIDE/ITS_pairs/hazy --target-out datasets/RESIDE/ITS_pairs/clear
    # PKU Rain100H original release: rain-001.png -> norain-001.png
    python scripts/data_preparation/pair_folders.py --input Rain100H/rain --target Rain100H/norain \
        --input-key '^rain-(\\d+)' --target-key '^norain-(\\d+)' \
        --input-out datasets/Rain100H/input --target-out datasets/Rain100H/target
"""
import argparse
import re
from os import path as osp

from image_files import list_images, place_as_png


def key_of(name, pattern, option):
    match = re.search(pattern, osp.splitext(name)[0])
    if match is None or not match.groups():
        raise ValueError(f"{option} '{pattern}' does not match '{name}' (or has no group); group 1 must be the key.")
    return match.group(1)


def pair_folders(input_folder, target_folder, input_out, target_out, input_key='^(.+)$', target_key='^(.+)$',
                 copy=False):
    """Write the pairs and return their names; an input without a target is an error that names it."""
    targets = {}
    for name in list_images(target_folder):
        key = key_of(name, target_key, '--target-key')
        if key in targets:
            raise ValueError(f"--target-key '{target_key}' gives '{key}' for both {targets[key]} and {name}.")
        targets[key] = name
    written = []
    for name in list_images(input_folder):
        key = key_of(name, input_key, '--input-key')
        if key not in targets:
            raise FileNotFoundError(f"no target for {name} (key '{key}') in {target_folder}.")
        output = osp.splitext(name)[0] + '.png'
        place_as_png(osp.join(input_folder, name), osp.join(input_out, output), copy)
        place_as_png(osp.join(target_folder, targets[key]), osp.join(target_out, output), copy)
        written.append(output)
    return written


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--input', required=True, help='folder of degraded images')
    parser.add_argument('--target', required=True, help='folder of clean images')
    parser.add_argument('--input-out', required=True)
    parser.add_argument('--target-out', required=True)
    parser.add_argument('--input-key', default='^(.+)$', help='regex on the input stem; group 1 is the key')
    parser.add_argument('--target-key', default='^(.+)$', help='regex on the target stem; group 1 is the key')
    parser.add_argument('--copy', action='store_true', help='copy PNG files instead of linking them')
    args = parser.parse_args()
    pairs = pair_folders(args.input, args.target, args.input_out, args.target_out, args.input_key, args.target_key,
                         args.copy)
    print(f'{len(pairs)} pairs written to {args.input_out} and {args.target_out}')


if __name__ == '__main__':
    main()
