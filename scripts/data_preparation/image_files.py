"""Small file helpers shared by the data-preparation scripts: list images, place a file under a new name."""
import os
import shutil
from os import path as osp

import cv2

from basicsr_diffloss.data.image_files import IMAGE_SUFFIXES


def list_images(folder):
    """The image file names directly in ``folder``, sorted; an error naming the folder if there are none."""
    if not osp.isdir(folder):
        raise FileNotFoundError(f'{folder} is not a folder.')
    names = sorted(name for name in os.listdir(folder) if name.lower().endswith(IMAGE_SUFFIXES))
    if not names:
        raise FileNotFoundError(f'{folder} holds no images ({", ".join(IMAGE_SUFFIXES[::2])}).')
    return names


def place_as_png(source, target, copy=False):
    """Put ``source`` at ``target`` (a .png path): a symlink (or a copy) when it already is a PNG, else re-encoded."""
    os.makedirs(osp.dirname(target) or '.', exist_ok=True)
    if osp.lexists(target):
        os.remove(target)
    if source.lower().endswith('.png'):
        if copy:
            shutil.copyfile(source, target)
        else:
            os.symlink(osp.abspath(source), target)
        return
    image = cv2.imread(source, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(f'cannot read {source} as an image.')
    cv2.imwrite(target, image)
