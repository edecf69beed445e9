"""Clean image crops from one or more folders, e.g. to train a diffusion prior."""
import math

import cv2
import numpy as np
from basicsr.utils import FileClient, imfrombytes, img2tensor, scandir
from basicsr.utils.registry import DATASET_REGISTRY
from torch.utils import data

from ..options import MissingFileError, OptionError
from .image_files import IMAGE_SUFFIXES
from .random_draws import ItemGenerators, random_augment


@DATASET_REGISTRY.register()
class ImageCropDataset(data.Dataset):
    """Square crops of clean images, returned as ``{'gt': CHW RGB float tensor in [0, 1], 'gt_path': str}``.

    Options:
        dataroot_gt (str): a folder of images, searched recursively.
        gt_size (int): side of the square crop.
        scale_range (list[float]): in the train phase, each image is first resized by a factor drawn uniformly from
            this range (multi-scale crops; the factor is raised where needed so the crop fits). Default: [1, 1].
        use_hflip (bool), use_rot (bool): random flips and 90-degree rotations in the train phase. Default: True.
        phase (str): set by BasicSR: ``train`` takes random crops; any other phase takes the centre crop at scale 1.
        io_backend (dict): BasicSR file client options. Default: ``{type: disk}``.
        cache_images (bool): keep decoded images in memory (for small sets read many times). Default: False.
        seed (int | None): seed of the scales, crops and flips (see ``ItemGenerators``); None follows
            ``manual_seed``. Default: None.
    """

    def __init__(self, opt):
        super().__init__()
        self.opt = opt
        root = opt['dataroot_gt']
        self.paths = sorted(scandir(root, suffix=IMAGE_SUFFIXES, recursive=True, full_path=True))
        if not self.paths:
            raise MissingFileError(f"ImageCropDataset option 'dataroot_gt': no images in '{root}'.")
        self.gt_size = int(opt['gt_size'])
        self.scale_range = [float(v) for v in opt.get('scale_range', (1, 1))]
        self.train = opt.get('phase') == 'train'
        self.io_backend_opt = dict(opt.get('io_backend', {'type': 'disk'}))
        self.file_client = None
        self.cache = {} if opt.get('cache_images', False) else None
        self._rng = ItemGenerators(opt.get('seed'), self.train)

    def __len__(self):
        return len(self.paths)

    def _read(self, path):
        if self.cache is not None and path in self.cache:
            return self.cache[path]
        if self.file_client is None:
            self.file_client = FileClient(self.io_backend_opt.pop('type'), **self.io_backend_opt)
        image = imfrombytes(self.file_client.get(path, 'gt'), float32=True)
        if self.cache is not None:
            self.cache[path] = image
        return image

    def __getitem__(self, index):
        path = self.paths[index]
        image = self._read(path)
        height, width = image.shape[:2]
        smallest_scale = self.gt_size / min(height, width)
        if self.train:
            # Resize only the window that becomes the crop: the same pixels as resizing the whole image, far cheaper.
            rng = self._rng(index)
            scale = max(rng.uniform(*self.scale_range), smallest_scale)
            window = min(math.ceil(self.gt_size / scale), height, width)
            top, left = int(rng.integers(height - window + 1)), int(rng.integers(width - window + 1))
            crop = image[top:top + window, left:left + window]
            if window != self.gt_size:
                crop = cv2.resize(crop, (self.gt_size, self.gt_size),
                                  interpolation=cv2.INTER_AREA if window > self.gt_size else cv2.INTER_CUBIC)
            crop = random_augment(crop, rng, self.opt.get('use_hflip', True), self.opt.get('use_rot', True))
        else:
            if smallest_scale > 1:
                raise OptionError(f"ImageCropDataset option 'gt_size': {self.gt_size} is larger than {path} "
                                 f'({width}x{height}).')
            top, left = (height - self.gt_size) // 2, (width - self.gt_size) // 2
            crop = image[top:top + self.gt_size, left:left + self.gt_size]
        crop = np.clip(crop, 0, 1)
        return {'gt': img2tensor(crop, bgr2rgb=True, float32=True), 'gt_path': path}
