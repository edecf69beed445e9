"""Clean images degraded on the fly into (lq, gt) pairs, configured from YAML."""
import math
from os import path as osp

import numpy as np
from basicsr.data.transforms import mod_crop
from basicsr.utils import FileClient, imfrombytes, img2tensor, scandir
from basicsr.utils.registry import DATASET_REGISTRY
from torch.utils import data

from ..options import MissingFileError, OptionError
from .degradations import Bicubic, build_degradations, scene_depth_files
from .image_files import IMAGE_SUFFIXES
from .random_draws import ItemGenerators, random_augment


@DATASET_REGISTRY.register()
class DegradedImageDataset(data.Dataset):
    """Clean images, cropped and degraded on the fly: ``{'lq', 'gt', 'lq_path', 'gt_path'}`` like PairedImageDataset.

    ``lq`` and ``gt`` are CHW RGB float tensors (``gt`` in [0, 1]; ``lq`` too unless a degradation leaves it
    unclipped); ``lq_path`` is the clean image's path, so validation names its outputs after it.

    Options:
        dataroot_gt (str): a folder of clean images. Required.
        extra_dataroot_gt (list[str]): more folders of clean images, read as one set with ``dataroot_gt`` (e.g.
            DFWB: DIV2K, Flickr2K, WED, BSD400). Default: [].
        recursive (bool): search sub-folders too. Default: False (benchmark folders often hold noisy copies in
            sub-folders).
        degradations (list[dict]): applied in order, each ``{type: ..., options}``; types and their options (with
            defaults) are in basicsr_diffloss/data/degradations.py: ``bicubic`` (scale), ``gaussian_noise`` (sigma,
            gray=False, clip=True), ``gaussian_blur`` (kernel_size=21, sigma=[0.2, 3.0]), ``motion_blur``
            (length=[5, 21], angle=[0, 180]), ``jpeg`` (quality=[30, 95]), ``low_light`` (gamma=[2.0, 3.5],
            gain=[0.1, 0.5], channel_gain=1, shot_noise=0, read_noise=0), ``haze`` (beta=[0.5, 2.5],
            airlight=[0.7, 1.0], tint=0,
            depth_folder=~, depth_suffix='.png', depth_gradient=[0.3, 0.9], depth_scale=[0.2, 0.5],
            near_depth=[0.0, 0.3]), ``rain`` (density=[0.001, 0.004], length=[10, 40], width=[1, 2.5],
            angle=[-20, 20], brightness=[0.3, 0.7], layers=1, blend='add', haze=~). Required. A ``depth_folder``
            (haze) holds a depth map per image, read, cropped and flipped with it.
        gt_size (int | None): train phase: side of the random square crop (required, a multiple of the total bicubic
            scale). Other phases: side of the centre crop, or None for the whole image (cropped to a multiple of the
            scale). Default: None.
        use_hflip (bool), use_rot (bool): random flips and 90-degree rotations in the train phase. Default: True.
        seed (int | None): seed of the crops, flips and degradations. With a seed, item i outside the train phase is
            the same in every epoch and run, and the train stream is reproducible for a given worker count; None
            follows ``manual_seed`` (see ``ItemGenerators``). Default: None.
        scale (int): set by BasicSR from the option file's top-level ``scale``; must equal the product of the
            ``bicubic`` scales (1 without one). Default: the product of the ``bicubic`` scales.
        io_backend (dict): BasicSR file client options; only ``{type: disk}`` (the default) is supported.
        phase (str): set by BasicSR: ``train`` or ``val``.
    """

    def __init__(self, opt):
        super().__init__()
        self.opt = opt
        if not isinstance(opt.get('dataroot_gt'), str):
            raise OptionError(f"DegradedImageDataset option 'dataroot_gt' must be one folder, got "
                             f"{opt.get('dataroot_gt')!r}; list further folders in 'extra_dataroot_gt' (BasicSR's "
                             'option parser needs dataroot_gt to be a single path).')
        roots = [opt['dataroot_gt'], *opt.get('extra_dataroot_gt', [])]
        missing = [root for root in roots if not osp.isdir(root)]
        if missing:
            raise MissingFileError(f"DegradedImageDataset options 'dataroot_gt' / 'extra_dataroot_gt': {missing} "
                                    'is not a folder (datasets/README.md says how to prepare each dataset).')
        recursive = bool(opt.get('recursive', False))
        self.paths = sorted(path for root in roots
                            for path in scandir(root, suffix=IMAGE_SUFFIXES, recursive=recursive, full_path=True))
        if not self.paths:
            raise MissingFileError(f"DegradedImageDataset option 'dataroot_gt': no images in {roots} "
                                    f'(recursive: {recursive}).')
        self.degradations = build_degradations(opt.get('degradations'))
        self.depth_files = scene_depth_files(self.degradations)
        if self.depth_files is not None:
            self.depth_files.check(self.paths)
        self.scale = math.prod(d.scale for d in self.degradations if isinstance(d, Bicubic))
        if opt.get('scale', self.scale) != self.scale:
            raise OptionError(f"DegradedImageDataset: the bicubic degradations downscale by {self.scale} but the "
                              f"option file's 'scale' is {opt['scale']}; make them agree.")
        self.train = opt.get('phase') == 'train'
        self.gt_size = opt.get('gt_size')
        if self.train and self.gt_size is None:
            raise OptionError("DegradedImageDataset option 'gt_size' is required in the train phase (the crop side).")
        if self.gt_size is not None and self.gt_size % self.scale:
            raise OptionError(f"DegradedImageDataset option 'gt_size': {self.gt_size} is not a multiple of the bicubic "
                             f'scale {self.scale}.')
        self._rng = ItemGenerators(opt.get('seed'), self.train)
        self.io_backend_opt = dict(opt.get('io_backend', {'type': 'disk'}))
        if self.io_backend_opt.get('type') != 'disk':
            raise OptionError(f"DegradedImageDataset option 'io_backend': {self.io_backend_opt} is not supported; use "
                             '{type: disk} (the folders are scanned for images).')
        self.file_client = None

    def __len__(self):
        return len(self.paths)

    def _crop(self, image, path, rng):
        height, width = image.shape[:2]
        size = self.gt_size
        if size is None:
            return mod_crop(image, self.scale)
        if size > min(height, width):
            raise OptionError(f"DegradedImageDataset option 'gt_size': {size} is larger than {path} "
                              f"({width}x{height}); lower gt_size or remove the image.")
        if self.train:
            top, left = int(rng.integers(height - size + 1)), int(rng.integers(width - size + 1))
        else:
            top, left = (height - size) // 2, (width - size) // 2
        return image[top:top + size, left:left + size]

    def __getitem__(self, index):
        if self.file_client is None:
            self.file_client = FileClient(self.io_backend_opt.pop('type'), **self.io_backend_opt)
        path = self.paths[index]
        rng = self._rng(index)
        gt = imfrombytes(self.file_client.get(path, 'gt'), float32=True)
        if self.depth_files is not None:  # a fourth channel, cropped and flipped with the image
            gt = np.dstack([gt, self.depth_files.read(path, *gt.shape[:2])])
        gt = self._crop(gt, path, rng)
        if self.train:
            gt = random_augment(gt, rng, self.opt.get('use_hflip', True), self.opt.get('use_rot', True))
        gt, depth = gt[..., :3], (np.ascontiguousarray(gt[..., 3]) if self.depth_files is not None else None)
        lq = gt
        for degrade in self.degradations:
            lq = degrade(lq, rng, depth) if getattr(degrade, 'depth_files', None) is not None else degrade(lq, rng)
        gt, lq = img2tensor([np.ascontiguousarray(gt), np.ascontiguousarray(lq)], bgr2rgb=True, float32=True)
        return {'lq': lq, 'gt': gt, 'lq_path': path, 'gt_path': path}
