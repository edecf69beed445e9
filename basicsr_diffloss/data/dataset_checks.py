"""Start-up checks of every dataset the train and test pipelines build: an empty set, a file that is no image and a
GT/LQ pair whose sizes do not match the scale are errors naming the folder or the file, before the first iteration.

BasicSR's datasets list every file of their folders and read them only when an item is drawn, so an empty folder
failed with ``ZeroDivisionError``, a text file with ``'NoneType' object has no attribute 'astype'`` after iteration
1, and a scale mismatch named no file. Sizes are read from the image headers (Pillow), not decoded.
"""
from basicsr.data import build_dataset
from PIL import Image

from ..options import MissingFileError, OptionError
from .image_files import IMAGE_SUFFIXES


def _owner(dataset_opt):
    return f"datasets.{dataset_opt.get('phase', '?')} ({dataset_opt.get('name')}, {dataset_opt.get('type')})"


def _image_size(owner, path):
    """``(width, height)`` of the image file ``path``; an OptionError naming it when it is no image."""
    if not path.endswith(IMAGE_SUFFIXES):
        raise OptionError(f"{owner}: '{path}' is not an image ({', '.join(IMAGE_SUFFIXES[::2])}); remove it from the "
                          'folder, or give a folder that holds images only.')
    try:
        with Image.open(path) as image:
            return image.size
    except OSError as error:
        raise OptionError(f"{owner}: '{path}' cannot be read as an image ({error}); replace or remove it.") from None


def _pairs(dataset):
    """The dataset's files as ``(gt, lq)`` paths (lq None for single-image sets), or None when it has no file list."""
    paths = getattr(dataset, 'paths', None)
    if not isinstance(paths, list):
        return None
    pairs = []
    for item in paths:
        if isinstance(item, dict):
            pairs.append((item.get('gt_path'), item.get('lq_path')))
        elif isinstance(item, str):
            pairs.append((item, None))
        else:
            return None
    return pairs


def check_dataset(dataset, dataset_opt):
    """Raise an OptionError naming the folder or file when ``dataset`` is empty, lists a file that is no image, or
    pairs a GT and an LQ whose sizes do not match ``scale`` (exactly in training, GT at least LQ x scale else)."""
    owner = _owner(dataset_opt)
    if len(dataset) == 0:
        folders = {key: dataset_opt[key] for key in dataset_opt if key.startswith('dataroot')}
        raise MissingFileError(f'{owner}: no images in {folders}; put the images there (datasets/README.md says how to '
                          'prepare each dataset) or correct the path.')
    backend = (dataset_opt.get('io_backend') or {}).get('type', 'disk')
    pairs = _pairs(dataset) if backend == 'disk' else None
    scale = dataset_opt.get('scale', 1)
    for gt, lq in pairs or ():
        gt_size = _image_size(owner, gt) if gt else None
        lq_size = _image_size(owner, lq) if lq and lq != gt else None
        if gt_size is None or lq_size is None:
            continue
        expected = tuple(side * scale for side in lq_size)
        training = dataset_opt.get('phase') == 'train'
        if (gt_size != expected) if training else any(g < e for g, e in zip(gt_size, expected)):
            raise OptionError(f"{owner}: GT '{gt}' is {gt_size[0]}x{gt_size[1]} but LQ '{lq}' is "
                              f"{lq_size[0]}x{lq_size[1]}, which at scale {scale} needs a GT of "
                              f'{expected[0]}x{expected[1]}; check the option scale and the pair.')
    return dataset


def checked_build_dataset(dataset_opt):
    """BasicSR's build_dataset, then :func:`check_dataset` (installed in basicsr.train and basicsr.test)."""
    return check_dataset(build_dataset(dataset_opt), dataset_opt)
