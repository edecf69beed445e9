"""NIQE that returns NaN, with a warning, on images too small for it instead of failing the validation."""
import numpy as np
from basicsr.metrics import calculate_niqe
from basicsr.metrics.metric_util import reorder_image
from basicsr.utils.registry import METRIC_REGISTRY

from .not_computable import not_computable

NIQE_BLOCK = 96  # BasicSR's NIQE fits its statistics to 96x96 blocks and needs at least two of them


@METRIC_REGISTRY.register()
def calculate_niqe_or_nan(img, crop_border, input_order='HWC', convert_to='y', **kwargs):
    """BasicSR's NIQE (no-reference; lower is better, about 2-4 for sharp photos, 7+ for blurry ones), or NaN.

    BasicSR's ``calculate_niqe`` fails with "SVD did not converge" on images with fewer than two 96x96 blocks
    (e.g. 128x128). This one returns NaN there and warns once per image size in BasicSR's log; DiffLossSRModel
    leaves NaN out of its means (see its docstring). Values equal ``calculate_niqe``'s otherwise.

    Args:
        img (ndarray): the restored image, uint8 BGR, as BasicSR's validation passes it.
        crop_border (int): pixels cut from each edge before measuring (required, as in BasicSR).
        input_order (str): ``HWC`` or ``CHW``. Default: ``HWC``.
        convert_to (str): measure the ``y`` channel of YCbCr or ``gray``. Default: ``y``.
        **kwargs: other options of the YAML block (e.g. ``better: lower``), ignored as BasicSR does.

    Needs, after ``crop_border``, one side of at least 192 px and the other of at least 96 px (two 96x96 blocks),
    and some texture: on a degenerate image (e.g. a periodic pattern a collapsed training run outputs) BasicSR's
    statistics fail to converge, and the result is NaN with a warning too.
    """
    height, width = reorder_image(img, input_order=input_order).shape[:2]
    height, width = height - 2 * crop_border, width - 2 * crop_border
    if (height // NIQE_BLOCK) * (width // NIQE_BLOCK) < 2:
        return not_computable('NIQE', height, width, f'at least two {NIQE_BLOCK}x{NIQE_BLOCK} blocks (one side '
                              f'of at least {2 * NIQE_BLOCK} px and the other of at least {NIQE_BLOCK} px)')
    try:
        return calculate_niqe(img, crop_border, input_order=input_order, convert_to=convert_to)
    except np.linalg.LinAlgError:
        return not_computable('NIQE', height, width, 'image statistics its SVD can fit (this image is degenerate)')
