"""LPIPS (Zhang et al. 2018) through the ``lpips`` package, with every weight read from a local file."""
import re
import warnings
from os import path as osp

import lpips
import torch
from basicsr.utils.registry import METRIC_REGISTRY
from torchvision.models import AlexNet_Weights, SqueezeNet1_1_Weights, VGG16_Weights

from .image_tensor import to_tensor_pair
from .not_computable import not_computable
from .weights import find_weights, load_exactly, read_state_dict, torchvision_file

BACKBONES = {'alex': AlexNet_Weights.IMAGENET1K_V1, 'vgg': VGG16_Weights.IMAGENET1K_V1,
             'squeeze': SqueezeNet1_1_Weights.IMAGENET1K_V1}
MIN_SIDE = 32  # AlexNet's stride-4 stem and three poolings leave nothing of smaller images
_models = {}


def _device():
    return torch.device('cuda' if torch.cuda.is_available() else 'cpu')


def _bundled_linear_weights(net):
    """The calibrated linear layers (LPIPS v0.1) that the ``lpips`` package ships for ``net``."""
    return osp.join(osp.dirname(lpips.__file__), 'weights', 'v0.1', f'{net}.pth')


def _load_backbone(backbone, path, net):
    """Fill lpips' backbone slices (``sliceK.<index>.*``) from a torchvision checkpoint (``features.<index>.*``)."""
    state = read_state_dict('LPIPS', path)
    wanted = {key: 'features.' + key.split('.', 1)[1] for key in backbone.state_dict()}
    missing = sorted(source for source in wanted.values() if source not in state)
    if missing:
        raise ValueError(f"LPIPS option 'weights': '{path}' is not a torchvision {net} checkpoint: it lacks "
                         f'{missing[:3]} ({len(missing)} keys). Use {torchvision_file(BACKBONES[net])[0]}.')
    load_exactly('LPIPS', backbone, {key: state[source] for key, source in wanted.items()}, path,
                 f'the {net} backbone')


def _load_linear_layers(model, path, net):
    """Fill the linear layers (``lin<k>.model.1.weight``); the file may hold nothing else."""
    state = read_state_dict('LPIPS', path)
    wanted = {key: value for key, value in model.state_dict().items() if re.match(r'lin\d', key)}
    if set(state) != set(wanted):
        raise ValueError(f"LPIPS option 'lin_weights': '{path}' holds {sorted(state)[:3]}..., not the linear layers "
                         f'of LPIPS-{net} ({sorted(wanted)[:3]}...). Use the lpips package file '
                         f'weights/v0.1/{net}.pth.')
    try:
        model.load_state_dict(state, strict=False)  # strict=False: the file holds the linear layers only
    except RuntimeError as error:
        raise ValueError(f"LPIPS option 'lin_weights': '{path}' does not fit LPIPS-{net}: {error}") from error


def load_lpips(net='alex', weights=None, lin_weights=None):
    """The LPIPS network for these options, built once per process and kept (on CUDA when available).

    Args:
        net (str): backbone, ``alex``, ``vgg`` or ``squeeze``. Default: ``alex``.
        weights (str | None): the torchvision ImageNet checkpoint of the backbone (alexnet-owt-7be5be79.pth,
            vgg16-397923af.pth or squeezenet1_1-b8a52dc0.pth). Default: that file in ``experiments/pretrained_models/``
            or in torch's hub cache.
        lin_weights (str | None): the calibrated linear layers. Default: the v0.1 file the ``lpips`` package ships.

    The backbone is built empty (no download is tried) and then filled from ``weights``.
    """
    if net not in BACKBONES:
        raise ValueError(f"LPIPS option 'net': {net!r} is not one of {sorted(BACKBONES)}.")
    file_name, url = torchvision_file(BACKBONES[net])
    backbone_path = find_weights('LPIPS', 'weights', weights, file_name, url,
                                 f'the ImageNet weights of its {net} backbone (torchvision)')
    linear_path = lin_weights if lin_weights is not None else _bundled_linear_weights(net)
    if not osp.isfile(linear_path):
        raise FileNotFoundError(f"LPIPS option 'lin_weights': '{linear_path}' is not a file; leave the option out to "
                                f'use the linear layers the lpips package ships (weights/v0.1/{net}.pth).')
    key = (net, osp.abspath(backbone_path), osp.abspath(linear_path))
    if key not in _models:
        with warnings.catch_warnings():  # lpips passes torchvision the deprecated 'pretrained' argument
            warnings.simplefilter('ignore')
            model = lpips.LPIPS(net=net, pretrained=False, pnet_rand=True, verbose=False)
        _load_backbone(model.net, backbone_path, net)
        _load_linear_layers(model, linear_path, net)
        _models[key] = model.eval().requires_grad_(False).to(_device())
    return _models[key]


@METRIC_REGISTRY.register()
def calculate_lpips(img, img2, crop_border=0, input_order='HWC', net='alex', weights=None, lin_weights=None,
                    **kwargs):
    """LPIPS v0.1, learned perceptual distance: 0 for identical images, LOWER is better (set ``better: lower``);
    typically 0.05-0.4 for restored images.

    Args:
        img, img2 (ndarray): the restored image and the ground truth, uint8 BGR, compared in RGB.
        crop_border (int): pixels cut from each edge. Default: 0.
        input_order (str): ``HWC`` or ``CHW``. Default: ``HWC``.
        net, weights, lin_weights: see :func:`load_lpips`; missing files are reported when the model is built.
        **kwargs: other options of the YAML block, ignored.

    Images with a side below 32 px after cropping give NaN and a warning.
    """
    x, y = to_tensor_pair('LPIPS', img, img2, crop_border, input_order)
    if min(x.shape[-2:]) < MIN_SIDE:
        return not_computable('LPIPS', *x.shape[-2:], f'both sides of at least {MIN_SIDE} px')
    model = load_lpips(net, weights, lin_weights)
    with torch.no_grad():
        return model(x.to(_device()) * 2 - 1, y.to(_device()) * 2 - 1).item()
