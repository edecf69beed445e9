"""Full-reference perceptual metrics from ``piq`` that need no downloaded weights: HaarPSI, GMSD, MS-SSIM."""
import piq
from basicsr.utils.registry import METRIC_REGISTRY

from .image_tensor import to_tensor_pair
from .not_computable import not_computable

HAARPSI_MIN_SIDE = 16  # 2^(scales + 1) for piq's 3 Haar scales
MS_SSIM_MIN_SIDE = 161  # (kernel_size - 1) * 2^(levels - 1) + 1 for an 11 px window and 5 levels


def _small(metric, image, min_side):
    """NaN with a warning when ``image`` (1, C, H, W) has a side below ``min_side``, else None."""
    height, width = image.shape[-2:]
    if min(height, width) < min_side:
        return not_computable(metric, height, width, f'both sides of at least {min_side} px')
    return None


@METRIC_REGISTRY.register()
def calculate_haarpsi(img, img2, crop_border=0, input_order='HWC', test_y_channel=False, **kwargs):
    """HaarPSI, Haar wavelet-based perceptual similarity (Reisenhofer et al. 2018), through ``piq.haarpsi``.

    Range [0, 1], higher is better, 1 for identical images. On RGB it compares the luminance and the two chroma
    channels (YIQ); with ``test_y_channel`` only BasicSR's Y channel.

    Args:
        img, img2 (ndarray): the restored image and the ground truth, uint8 BGR, as BasicSR's validation passes them.
        crop_border (int): pixels cut from each edge. Default: 0.
        input_order (str): ``HWC`` or ``CHW``. Default: ``HWC``.
        test_y_channel (bool): compare the Y channel of YCbCr only. Default: False.
        **kwargs: other options of the YAML block (e.g. ``better: higher``), ignored as BasicSR does.

    Images with a side below 16 px after cropping give NaN and a warning.
    """
    x, y = to_tensor_pair('HaarPSI', img, img2, crop_border, input_order, test_y_channel)
    small = _small('HaarPSI', x, HAARPSI_MIN_SIDE)
    return small if small is not None else piq.haarpsi(x, y, data_range=1.).item()


@METRIC_REGISTRY.register()
def calculate_gmsd(img, img2, crop_border=0, input_order='HWC', test_y_channel=False, **kwargs):
    """GMSD, gradient magnitude similarity deviation (Xue et al. 2013), through ``piq.gmsd``.

    Range [0, about 0.35], LOWER is better (set ``better: lower``), 0 for identical images. It compares the
    luminance only: the Y channel of YIQ on RGB input, BasicSR's Y of YCbCr with ``test_y_channel``.

    Args:
        img, img2 (ndarray): the restored image and the ground truth, uint8 BGR.
        crop_border (int): pixels cut from each edge. Default: 0.
        input_order (str): ``HWC`` or ``CHW``. Default: ``HWC``.
        test_y_channel (bool): compare BasicSR's Y channel of YCbCr. Default: False.
        **kwargs: other options of the YAML block, ignored.
    """
    x, y = to_tensor_pair('GMSD', img, img2, crop_border, input_order, test_y_channel)
    return piq.gmsd(x, y, data_range=1.).item()


@METRIC_REGISTRY.register()
def calculate_ms_ssim(img, img2, crop_border=0, input_order='HWC', test_y_channel=False, **kwargs):
    """MS-SSIM, multi-scale structural similarity (Wang et al. 2003), through ``piq.multi_scale_ssim``.

    Range [0, 1], higher is better, 1 for identical images; 5 scales, 11 px Gaussian window, averaged over the RGB
    channels (or BasicSR's Y channel with ``test_y_channel``).

    Args:
        img, img2 (ndarray): the restored image and the ground truth, uint8 BGR.
        crop_border (int): pixels cut from each edge. Default: 0.
        input_order (str): ``HWC`` or ``CHW``. Default: ``HWC``.
        test_y_channel (bool): compare BasicSR's Y channel of YCbCr. Default: False.
        **kwargs: other options of the YAML block, ignored.

    Images with a side below 161 px after cropping give NaN and a warning.
    """
    x, y = to_tensor_pair('MS-SSIM', img, img2, crop_border, input_order, test_y_channel)
    small = _small('MS-SSIM', x, MS_SSIM_MIN_SIDE)
    return small if small is not None else piq.multi_scale_ssim(x, y, data_range=1.).item()
