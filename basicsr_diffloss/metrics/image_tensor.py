"""BasicSR's metric inputs (uint8 BGR numpy images) as float tensors for torch metrics."""
import numpy as np
import torch
from basicsr.metrics.metric_util import reorder_image, to_y_channel


def to_tensor(img, crop_border=0, input_order='HWC', test_y_channel=False):
    """A BasicSR metric image as a (1, C, H, W) float32 tensor in [0, 1].

    Args:
        img (ndarray): uint8 (or float in [0, 255]) image in BGR order, as BasicSR's validation passes it.
        crop_border (int): pixels cut from each edge, as in BasicSR's calculate_psnr. Default: 0.
        input_order (str): ``HWC`` or ``CHW``. Default: ``HWC``.
        test_y_channel (bool): keep only the Y channel of YCbCr, computed as BasicSR's ``to_y_channel`` (one
            channel); otherwise the image is converted to RGB (three channels). Default: False.
    """
    img = reorder_image(img, input_order=input_order)
    if crop_border:
        img = img[crop_border:-crop_border, crop_border:-crop_border]
    if test_y_channel:
        img = to_y_channel(img)
    elif img.shape[2] == 3:
        img = img[..., ::-1]
    array = np.ascontiguousarray(img, dtype=np.float32) / 255.
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).clamp(0, 1)


def to_tensor_pair(metric, img, img2, crop_border=0, input_order='HWC', test_y_channel=False):
    """Both images of a full-reference metric as tensors; an error naming ``metric`` when their shapes differ."""
    if img2 is None:
        raise ValueError(f'{metric} is a full-reference metric and needs the ground truth; the validation set gives '
                         'none (use a paired dataset with dataroot_gt, or a no-reference metric such as NIQE).')
    if img.shape != img2.shape:
        raise ValueError(f'{metric}: the images differ in shape: {img.shape} and {img2.shape}.')
    return (to_tensor(img, crop_border, input_order, test_y_channel),
            to_tensor(img2, crop_border, input_order, test_y_channel))
