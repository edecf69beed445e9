"""Stand-ins for the pretrained weights option files name, written where BasicSR looks for them (never downloaded)."""
import os
from os import path as osp

import torch
import torchvision

from basicsr.archs import build_network
from basicsr.archs import vgg_arch


def write_random_vgg19(path=vgg_arch.VGG_PRETRAIN_PATH, seed=0):
    """Random VGG19 weights in torchvision's format (``vgg19-dcbb9e9d.pth``'s keys and shapes) at ``path``.

    The convolutions get He-initialised random weights; the classifier, which BasicSR's VGGFeatureExtractor drops,
    is stored as a broadcast zero so that the file holds 80 MB instead of 550 MB.
    """
    with torch.device('meta'):
        shapes = {key: value.shape for key, value in torchvision.models.vgg19().state_dict().items()}
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        if key.startswith('features') and key.endswith('weight'):
            fan_in = shape[1] * shape[2] * shape[3]
            state[key] = torch.randn(shape, generator=generator) * (2 / fan_in)**0.5
        else:
            state[key] = torch.zeros(()).expand(shape)
    os.makedirs(osp.dirname(path) or '.', exist_ok=True)
    torch.save(state, path)
    return path


def write_network_checkpoint(network_opt, path, param_key, seed=0):
    """A BasicSR checkpoint (``{param_key: state_dict}``) of a randomly initialised ``network_opt`` at ``path``.

    A last convolution named ``conv_last`` (RRDBNet's) gets a bias of 0.5, so that the stand-in's outputs lie in
    [0, 1] as a trained restorer's do: DiffLoss clamps values outside that range, which would leave it no gradient.
    """
    torch.manual_seed(seed)
    network = build_network(dict(network_opt))
    state = network.state_dict()
    if 'conv_last.bias' in state:
        state['conv_last.bias'].fill_(0.5)
    os.makedirs(osp.dirname(path) or '.', exist_ok=True)
    torch.save({param_key or 'params': state}, path)
    return path
