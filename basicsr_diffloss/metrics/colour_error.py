"""Colour error: the mean CIEDE2000 difference between two images (scikit-image's ``deltaE_ciede2000``)."""
import cv2
import numpy as np
from basicsr.utils.registry import METRIC_REGISTRY
from skimage.color import deltaE_ciede2000, rgb2lab


@METRIC_REGISTRY.register()
def calculate_ciede2000(img, img2, crop_border=0, input_order='HWC', **kwargs):
    """Mean CIEDE2000 colour difference over pixels (Sharma et al. 2005), in CIELAB units: 0 for identical images,
    about 2.3 a just-noticeable difference; lower is better. It measures colour casts and brightness errors, which
    PSNR on Y misses.

    Args:
        img, img2 (ndarray): the restored image and the ground truth, uint8 BGR, as BasicSR's validation passes them.
        crop_border (int): pixels cut from each edge. Default: 0.
        input_order (str): ``HWC`` or ``CHW``. Default: ``HWC``.
        **kwargs: other options of the YAML block (e.g. ``better: lower``), ignored as BasicSR does.
    """
    if img.shape != img2.shape:
        raise ValueError(f'calculate_ciede2000: image shapes differ: {img.shape} and {img2.shape}.')
    labs = []
    for image in (img, img2):
        if input_order == 'CHW':
            image = image.transpose(1, 2, 0)
        if crop_border:
            image = image[crop_border:-crop_border, crop_border:-crop_border]
        rgb = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_BGR2RGB).astype(np.float64) / 255
        labs.append(rgb2lab(rgb))
    return float(deltaE_ciede2000(*labs).mean())
