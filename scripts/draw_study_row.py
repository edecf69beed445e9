"""One picture per photo of a study run folder: LQ | each setting's output | GT, whole images side by side, for the
docs (docs/images/study/low_light_before_after.png was drawn with it).

    python scripts/draw_study_row.py --study results/study_ll --task ll --split confirmation --seed 0 \
        --settings l1 strength_2 strength_2_cap_0.1 --photos sklearn_china efl_plant_01 --height 200 \
        --output docs/images/study/low_light_before_after.png
"""
import argparse
from os import path as osp

import cv2
import numpy as np

SUFFIX = {'tuning': '', 'confirmation': '_confirmation'}


def labelled(image, text, height):
    image = cv2.resize(image, (round(image.shape[1] * height / image.shape[0]), height), interpolation=cv2.INTER_AREA)
    cv2.putText(image, text, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(image, text, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
    return image


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--study', required=True)
    parser.add_argument('--task', required=True)
    parser.add_argument('--split', default='confirmation', choices=list(SUFFIX))
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--settings', nargs='+', required=True)
    parser.add_argument('--photos', nargs='+', required=True)
    parser.add_argument('--height', type=int, default=200)
    parser.add_argument('--output', required=True)
    args = parser.parse_args()
    suffix = SUFFIX[args.split]
    rows = []
    for photo in args.photos:
        columns = [('LQ', osp.join(args.study, 'lq', args.task + suffix, f'{photo}.png'))]
        columns += [(name, osp.join(args.study, 'outputs', args.task, f'{name}_s{args.seed}{suffix}', f'{photo}.png'))
                    for name in args.settings]
        columns.append(('GT', osp.join(args.study, 'gt', args.task + suffix, f'{photo}.png')))
        images = []
        for label, path in columns:
            image = cv2.imread(path)
            if image is None:
                raise SystemExit(f'no image at {path}')
            images.append(labelled(image, label, args.height))
        rows.append(np.hstack(images))
    width = max(row.shape[1] for row in rows)
    rows = [np.pad(row, ((0, 0), (0, width - row.shape[1]), (0, 0)), constant_values=255) for row in rows]
    cv2.imwrite(args.output, np.vstack(rows))
    print(f'wrote {args.output}')


if __name__ == '__main__':
    main()
