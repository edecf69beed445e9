"""Depth maps stored beside the photos, read as the scene depth of the ``haze`` degradation."""
from os import path as osp

import cv2
import numpy as np

from ..options import OptionError, option_error

DEPTH_FORMATS = ('.png', '.npy')


class DepthFiles:
    """The depth map of ``<image folder>/x.jpg`` is ``<folder>/x<suffix>``: a PNG (16- or 8-bit, one channel or the
    first of several) or a .npy array, holding depth (larger = farther) in any units.

    ``read`` returns it as relative depth in [0, 1] (divided by its maximum, so the farthest point is 1 and 0 is at
    the camera), resized to the image when its aspect ratio matches (a depth estimator's lower resolution).
    """

    def __init__(self, where, folder, suffix):
        if not isinstance(folder, str) or not osp.isdir(folder):
            raise option_error(where, 'depth_folder', folder, 'is not a folder; name the folder of depth maps, or '
                               'leave depth_folder unset (~) for a random depth field.')
        if not isinstance(suffix, str) or not suffix.lower().endswith(DEPTH_FORMATS):
            raise option_error(where, 'depth_suffix', suffix, f'must end with one of {list(DEPTH_FORMATS)} (e.g. '
                               "'.png', '_depth.npy').")
        self.where, self.folder, self.suffix = where, folder, suffix

    def __eq__(self, other):
        return isinstance(other, DepthFiles) and (self.folder, self.suffix) == (other.folder, other.suffix)

    def __hash__(self):
        return hash((self.folder, self.suffix))

    def path(self, image_path):
        return osp.join(self.folder, osp.splitext(osp.basename(image_path))[0] + self.suffix)

    def check(self, image_paths):
        """Every image has its depth map (checked at start-up, before the first item is read)."""
        missing = [path for path in image_paths if not osp.isfile(self.path(path))]
        if missing:
            raise OptionError(f"{self.where} option 'depth_folder': no depth map {self.path(missing[0])} for "
                              f'{missing[0]} ({len(missing)} of {len(image_paths)} images lack one); add them, or '
                              'leave depth_folder unset (~) for a random depth field.')

    def read(self, image_path, height, width):
        """The relative depth (float32, ``height`` x ``width``, in [0, 1]) of the image at ``image_path``."""
        path = self.path(image_path)
        if path.lower().endswith('.npy'):
            depth = np.load(path)
        else:
            depth = cv2.imread(path, cv2.IMREAD_UNCHANGED)
            if depth is not None and depth.ndim == 3:
                depth = depth[..., 0]
        depth = None if depth is None else np.squeeze(np.asarray(depth, np.float32))
        if depth is None or depth.ndim != 2 or not np.isfinite(depth).all() or depth.min() < 0 or depth.max() <= 0:
            raise OptionError(f'{self.where}: the depth map {path} is not a readable 2-D map of finite depths >= 0 '
                              'with a positive maximum; rewrite it (16-bit PNG or .npy, larger = farther).')
        if depth.shape != (height, width):
            if abs(depth.shape[1] / depth.shape[0] - width / height) > 0.01 * width / height:
                raise OptionError(f'{self.where}: the depth map {path} is {depth.shape[1]}x{depth.shape[0]} but the '
                                  f'image is {width}x{height} (another aspect ratio); give it the image size.')
            depth = cv2.resize(depth, (width, height), interpolation=cv2.INTER_LINEAR)
        return depth / depth.max()
