"""Draw the synthetic haze and rain of DegradedImageDataset on a photo: a clean panel, then one panel per setting.

    python scripts/draw_degradations.py --photos ../shared/data/photos   # writes docs/images/tasks/{haze,rain}.png

Each panel is the degradation built from the option dict printed under it (basicsr_diffloss/data/degradations.py),
with the random draws of ``numpy.random.default_rng(--seed)``; the haze figure ends with the random depth field the
three beta panels used (white = far).
"""
import argparse
import os
import textwrap
from os import path as osp

import cv2
import numpy as np

import basicsr_diffloss  # noqa: F401  (repairs basicsr before it is imported)
from basicsr_diffloss.data.degradations import build_degradations, random_depth

FIGURES = {
    'haze': ('lomiri_aitzgorri_by_Aitzol_Berasategi.png', [
        dict(type='haze', beta=0.7, airlight=0.85, depth_gradient=0.6, depth_scale=0.3, near_depth=0.1),
        dict(type='haze', beta=1.6, airlight=0.85, depth_gradient=0.6, depth_scale=0.3, near_depth=0.1),
        dict(type='haze', beta=3.0, airlight=0.85, depth_gradient=0.6, depth_scale=0.3, near_depth=0.1),
        dict(type='haze', beta=2.0, airlight=0.8, tint=0.2, depth_gradient=0.6, depth_scale=0.3, near_depth=0.1),
    ]),
    'rain': ('lomiri_life_by_Aitzol_Berasategi.png', [
        dict(type='rain', density=0.002, length=20, width=1.0, angle=-10, brightness=0.5),
        dict(type='rain', density=0.0015, length=[20, 45], width=[1, 2.5], angle=15, brightness=[0.3, 0.6],
             layers=3),
        dict(type='rain', density=0.0015, length=[20, 45], width=[1, 2.5], angle=15, brightness=[0.3, 0.6],
             layers=3, haze=dict(beta=0.5, airlight=0.8, near_depth=1.0)),
    ]),
}
PANEL_HEIGHT = 240
CAPTION_HEIGHT = 50


def caption(option):
    """The option dict's settings (``type`` aside), wrapped to the panel."""
    return textwrap.wrap(', '.join(f'{key}: {value}' for key, value in option.items() if key != 'type'), 62)


def panel(image, lines):
    """``image`` (float BGR in [0, 1]) above a white strip with the caption lines, as uint8."""
    strip = np.full((CAPTION_HEIGHT, image.shape[1], 3), 255, np.uint8)
    for row, line in enumerate(lines):
        cv2.putText(strip, line, (4, 13 + 15 * row), cv2.FONT_HERSHEY_SIMPLEX, 0.36, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([(np.clip(image, 0, 1) * 255).round().astype(np.uint8), strip])


def draw(photo, options, seed):
    panels = [panel(photo, ['clean'])]
    for option in options:
        degrade, = build_degradations([option])
        panels.append(panel(degrade(photo, np.random.default_rng(seed)), caption(option)))
    if options[0]['type'] == 'haze':  # replay the first panel's draws up to its depth field
        rng = np.random.default_rng(seed)
        degrade, = build_degradations([options[0]])
        degrade.beta.draw(rng), degrade.airlight.draw(rng), degrade.tint.draw(rng)
        depth = random_depth(*photo.shape[:2], rng, degrade.depth_gradient.draw(rng), degrade.depth_scale.draw(rng),
                             degrade.near_depth.draw(rng))
        panels.append(panel(np.repeat(depth[..., None], 3, axis=2), ['random depth d of the beta panels (white: far)']))
    return grid(panels, columns=3 if len(panels) > 4 else 2)


def grid(panels, columns, gap=4):
    """The panels (all one size) in rows of ``columns``, white gaps between them."""
    height, width = panels[0].shape[:2]
    rows = -(-len(panels) // columns)
    figure = np.full((rows * (height + gap) - gap, columns * (width + gap) - gap, 3), 255, np.uint8)
    for index, item in enumerate(panels):
        top, left = index // columns * (height + gap), index % columns * (width + gap)
        figure[top:top + height, left:left + width] = item
    return figure


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--photos', default='../shared/data/photos', help='folder holding the photos in FIGURES')
    parser.add_argument('--output', default='docs/images/tasks', help='output folder')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    os.makedirs(args.output, exist_ok=True)
    for name, (file_name, options) in FIGURES.items():
        photo = cv2.imread(osp.join(args.photos, file_name))
        if photo is None:
            raise SystemExit(f"--photos: '{args.photos}' has no {file_name}.")
        height, width = photo.shape[:2]
        photo = cv2.resize(photo, (round(width * PANEL_HEIGHT / height), PANEL_HEIGHT), interpolation=cv2.INTER_AREA)
        figure = draw(photo.astype(np.float32) / 255, options, args.seed)
        cv2.imwrite(osp.join(args.output, f'{name}.png'), figure, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        print(f"{osp.join(args.output, f'{name}.png')}: {file_name} and {len(options)} settings")


if __name__ == '__main__':
    main()
