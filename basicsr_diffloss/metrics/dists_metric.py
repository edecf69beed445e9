"""DISTS (Ding et al. 2020), structure and texture similarity of VGG16 features, with weights read from local files."""
from os import path as osp

import numpy as np
import torch
import torch.nn.functional as F
from basicsr.utils.registry import METRIC_REGISTRY
from torch import nn
from torchvision.models import VGG16_Weights
from torchvision.models.vgg import cfgs, make_layers

from .image_tensor import to_tensor_pair
from .not_computable import not_computable
from .weights import find_weights, read_state_dict, torchvision_file

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
STAGE_ENDS = (4, 9, 16, 23, 30)  # torchvision vgg16.features up to relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
MIN_SIDE = 32  # four 2x poolings
_models = {}


class L2Pooling(nn.Module):
    """DISTS' replacement of VGG's max pooling: sqrt of a 3x3 Hann-weighted mean of squares, stride 2."""

    def __init__(self, channels):
        super().__init__()
        window = np.hanning(5)[1:-1]
        kernel = torch.tensor(np.outer(window, window), dtype=torch.float32)
        self.register_buffer('kernel', (kernel / kernel.sum()).expand(channels, 1, 3, 3).contiguous())

    def forward(self, x):
        pooled = F.conv2d(x**2, self.kernel, stride=2, padding=1, groups=x.shape[1])
        return (pooled + 1e-12).sqrt()


class DISTSNetwork(nn.Module):
    """The DISTS distance between images in [0, 1]: ``forward(x, y)`` gives one value per image, 0 when x == y.

    Args:
        vgg_state (dict): a torchvision VGG16 state dict (ImageNet weights); its ``features.*`` entries are loaded
            strictly, the classifier's are not needed.
        alpha, beta (Tensor): DISTS' learned weights of the texture and structure terms, shape (1, 1475, 1, 1).
    """

    def __init__(self, vgg_state, alpha, beta):
        super().__init__()
        features = make_layers(cfgs['D'])  # VGG16's convolutional part, as in torchvision's vgg16
        features.load_state_dict({key[len('features.'):]: value for key, value in vgg_state.items()
                                  if key.startswith('features.')})
        layers = list(features)
        starts = (0, ) + STAGE_ENDS[:-1]
        self.stages = nn.ModuleList()
        for start, end in zip(starts, STAGE_ENDS):
            stage = [L2Pooling(layers[start - 2].out_channels) if isinstance(layer, nn.MaxPool2d) else layer
                     for layer in layers[start:end]]
            self.stages.append(nn.Sequential(*stage))
        self.channels = [3] + [stage[-2].out_channels for stage in self.stages]
        total = alpha.sum() + beta.sum()
        self.register_buffer('alpha', alpha / total)
        self.register_buffer('beta', beta / total)
        self.register_buffer('mean', torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer('std', torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def features(self, x):
        """The image itself, then the five VGG stages (the first on the ImageNet-normalised image)."""
        feats, h = [x], (x - self.mean) / self.std
        for stage in self.stages:
            h = stage(h)
            feats.append(h)
        return feats

    def forward(self, x, y, eps=1e-6):
        similarity = 0
        alphas = torch.split(self.alpha, self.channels, dim=1)
        betas = torch.split(self.beta, self.channels, dim=1)
        for fx, fy, alpha, beta in zip(self.features(x), self.features(y), alphas, betas):
            mx, my = fx.mean((2, 3), keepdim=True), fy.mean((2, 3), keepdim=True)
            vx, vy = ((fx - mx)**2).mean((2, 3), keepdim=True), ((fy - my)**2).mean((2, 3), keepdim=True)
            cov = (fx * fy).mean((2, 3), keepdim=True) - mx * my
            texture = (2 * mx * my + eps) / (mx**2 + my**2 + eps)
            structure = (2 * cov + eps) / (vx + vy + eps)
            similarity = similarity + (alpha * texture + beta * structure).sum(1)
        return 1 - similarity.flatten()


def _bundled_alpha_beta():
    """The learned DISTS weights (alpha, beta) that the ``DISTS_pytorch`` package ships, or None."""
    try:
        import DISTS_pytorch
    except ImportError:
        return None
    return osp.join(osp.dirname(DISTS_pytorch.__file__), 'weights.pt')


def load_dists(weights=None, alpha_beta=None):
    """The DISTS network for these options, built once per process and kept (on CUDA when available).

    Args:
        weights (str | None): torchvision's ImageNet VGG16 checkpoint (vgg16-397923af.pth). Default: that file in
            ``experiments/pretrained_models/`` or in torch's hub cache.
        alpha_beta (str | None): DISTS' learned weights, a file with tensors ``alpha`` and ``beta`` (weights.pt of
            the DISTS authors). Default: the one the ``DISTS_pytorch`` package ships.
    """
    file_name, url = torchvision_file(VGG16_Weights.IMAGENET1K_V1)
    vgg_path = find_weights('DISTS', 'weights', weights, file_name, url,
                            'the ImageNet weights of its VGG16 (torchvision)')
    alpha_beta = alpha_beta if alpha_beta is not None else _bundled_alpha_beta()
    if alpha_beta is None or not osp.isfile(alpha_beta):
        raise FileNotFoundError(f"DISTS option 'alpha_beta': {alpha_beta!r} is not a file. Install the DISTS_pytorch "
                                "package (pip install dists-pytorch; it ships them) or point 'alpha_beta' at the "
                                "DISTS authors' weights.pt.")
    key = (osp.abspath(vgg_path), osp.abspath(alpha_beta))
    if key not in _models:
        learned = read_state_dict('DISTS', alpha_beta)
        if set(learned) != {'alpha', 'beta'} or learned['alpha'].shape != (1, 1475, 1, 1):
            raise ValueError(f"DISTS option 'alpha_beta': '{alpha_beta}' must hold tensors 'alpha' and 'beta' of shape "
                             f'(1, 1475, 1, 1); it holds {sorted(learned)}.')
        vgg_state = read_state_dict('DISTS', vgg_path)
        try:
            model = DISTSNetwork(vgg_state, learned['alpha'], learned['beta'])
        except RuntimeError as error:
            raise ValueError(f"DISTS option 'weights': '{vgg_path}' is not a torchvision VGG16 checkpoint: "
                             f'{error}') from error
        device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
        _models[key] = model.eval().requires_grad_(False).to(device)
    return _models[key]


@METRIC_REGISTRY.register()
def calculate_dists(img, img2, crop_border=0, input_order='HWC', weights=None, alpha_beta=None, **kwargs):
    """DISTS, deep image structure and texture similarity as a distance: 0 for identical images, LOWER is better
    (set ``better: lower``); typically 0.05-0.3 for restored images.

    Args:
        img, img2 (ndarray): the restored image and the ground truth, uint8 BGR, compared in RGB.
        crop_border (int): pixels cut from each edge. Default: 0.
        input_order (str): ``HWC`` or ``CHW``. Default: ``HWC``.
        weights, alpha_beta: see :func:`load_dists`; missing files are reported when the model is built.
        **kwargs: other options of the YAML block, ignored.

    Images with a side below 32 px after cropping give NaN and a warning.
    """
    x, y = to_tensor_pair('DISTS', img, img2, crop_border, input_order)
    if min(x.shape[-2:]) < MIN_SIDE:
        return not_computable('DISTS', *x.shape[-2:], f'both sides of at least {MIN_SIDE} px')
    model = load_dists(weights, alpha_beta)
    device = model.alpha.device
    with torch.no_grad():
        return model(x.to(device), y.to(device)).item()
