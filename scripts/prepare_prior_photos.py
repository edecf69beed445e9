"""Collect the photos the default prior is trained and checked on, with licenses that allow shipping its weights.

Copies the CC0 and CC-BY photos of ``--photos`` (default ../shared/data/photos) and scikit-image's public-domain and
CC0 photos into ``--output`` (default datasets/prior_photos) as ``train/`` and ``heldout/``. The split is fixed
here, by photo: the held-out photos are never used for training, and chelsea is also the demo's validation photo.
CC-BY-SA (share-alike) and GPL photos are left out.
"""
import argparse
import os
import shutil
from os import path as osp

import cv2
from skimage import data

# file or scikit-image name -> (split, credit, license)
PHOTOS = {
    'lomiri_Picture_0B_by_freespace.png': ('train', 'Trevor "Freespace", 2018', 'CC-BY-4.0'),
    'lomiri_Picture_1A_by_freespace.png': ('train', 'Trevor "Freespace", 2018', 'CC-BY-4.0'),
    'lomiri_Wine_by_Jakkub_Mede.png': ('train', 'Jakub Mede, 2018', 'CC-BY-4.0'),
    'lomiri_aitzgorri_by_Aitzol_Berasategi.png': ('train', 'Aitzol Berasategi, 2018', 'CC-BY-4.0'),
    'lomiri_friends_by_Aitzol_Berasategi.png': ('train', 'Aitzol Berasategi, 2018', 'CC-BY-4.0'),
    'lomiri_picosdeeuropa_by_Aitzol_Berasategi.png': ('train', 'Aitzol Berasategi, 2018', 'CC-BY-4.0'),
    'lomiri_seeding_by_Clements_Engelhardt.png': ('train', 'Clemens Engelhardt, 2018', 'CC0-1.0'),
    'lomiri_life_by_Aitzol_Berasategi.png': ('heldout', 'Aitzol Berasategi, 2018', 'CC-BY-4.0'),
    'lomiri_sunset_by_Aitzol_Berasategi.png': ('heldout', 'Aitzol Berasategi, 2018', 'CC-BY-4.0'),
    'skimage:astronaut': ('train', 'NASA (Eileen Collins), via scikit-image', 'public domain'),
    'skimage:coffee': ('train', 'Rachel Michetti, via scikit-image', 'CC0'),
    'skimage:rocket': ('train', 'SpaceX, via scikit-image', 'public domain'),
    'skimage:chelsea': ('heldout', 'Stefan van der Walt, via scikit-image', 'CC0'),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--photos', default='../shared/data/photos', help='folder of the shared photos')
    parser.add_argument('--output', default='datasets/prior_photos', help='output folder')
    args = parser.parse_args()
    for name, (split, _, _) in PHOTOS.items():
        folder = osp.join(args.output, split)
        os.makedirs(folder, exist_ok=True)
        if name.startswith('skimage:'):
            photo = name.split(':')[1]
            cv2.imwrite(osp.join(folder, f'skimage_{photo}.png'), cv2.cvtColor(getattr(data, photo)(), cv2.COLOR_RGB2BGR))
        else:
            source = osp.join(args.photos, name)
            if not osp.isfile(source):
                raise SystemExit(f"--photos: '{source}' is missing; point --photos at the shared photo folder.")
            shutil.copyfile(source, osp.join(folder, name))
    counts = {split: sum(s == split for s, _, _ in PHOTOS.values()) for split in ('train', 'heldout')}
    print(f'{counts["train"]} training and {counts["heldout"]} held-out photos written to {args.output}')


if __name__ == '__main__':
    main()
