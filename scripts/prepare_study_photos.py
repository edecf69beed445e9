"""Write the study's fixed photo split (scripts/study/data.py) as folders, for training a prior on the study's own
training photos with options/train/prior/train_study_split_prior.yml.

Copies the photos of ``--photos`` into ``--output`` (default datasets/study_photos) as ``train/`` (the photos the study
trains its restorers on) and ``validation/`` (``VALIDATION_PHOTOS``, never trained on), at full resolution.
"""
import argparse
import os
import shutil
from os import path as osp

import basicsr_diffloss  # noqa: F401  (repairs basicsr before it is imported)
from basicsr.utils import scandir
from basicsr_diffloss.data.image_files import IMAGE_SUFFIXES
from study.data import VALIDATION_PHOTOS


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--photos', required=True, help='the shared photo folder, e.g. ../shared/data/photos')
    parser.add_argument('--output', default='datasets/study_photos', help='output folder')
    args = parser.parse_args()
    counts = {'train': 0, 'validation': 0}
    for file_name in sorted(scandir(args.photos, suffix=IMAGE_SUFFIXES)):
        split = 'validation' if osp.splitext(file_name)[0] in VALIDATION_PHOTOS else 'train'
        os.makedirs(osp.join(args.output, split), exist_ok=True)
        shutil.copyfile(osp.join(args.photos, file_name), osp.join(args.output, split, file_name))
        counts[split] += 1
    if not counts['validation'] or not counts['train']:
        raise SystemExit(f"--photos: '{args.photos}' does not hold the study's photos ({counts}).")
    print(f"{counts['train']} training and {counts['validation']} validation photos written to {args.output}")


if __name__ == '__main__':
    main()
