"""Where the learned metrics find their weights: never downloaded, always read from a local file."""
import os
from os import path as osp

import torch

PRETRAINED_DIR = osp.join('experiments', 'pretrained_models')  # BasicSR's place for VGG and other weights


def torchvision_file(weights_enum):
    """The file name and download address of a torchvision weights enum member (e.g. ``AlexNet_Weights.DEFAULT``)."""
    return osp.basename(weights_enum.url), weights_enum.url


def find_weights(metric, option, given, file_name, url, what):
    """The path of a weights file, or a FileNotFoundError that names the file, where to put it and where to get it.

    Args:
        metric (str): the metric's name, for messages.
        option (str): the metric option that names the file.
        given (str | None): that option's value. When set, it must be an existing file.
        file_name (str): the file's usual name; without ``given`` it is looked for in ``experiments/pretrained_models/``
            (relative to the run directory) and then in torch's hub cache (``$TORCH_HOME/hub/checkpoints``), where
            torchvision keeps what it downloaded on a machine with internet.
        url (str): where the file can be downloaded, for messages.
        what (str): what the file holds, for messages.
    """
    if given is not None:
        if osp.isfile(given):
            return given
        raise FileNotFoundError(f"{metric} option '{option}': '{given}' is not a file. It must be {what} "
                                f'({file_name}, from {url}): download it on a machine with internet and copy it '
                                f"there, or point '{option}' at it. Nothing is downloaded at run time.")
    candidates = [osp.join(PRETRAINED_DIR, file_name), osp.join(torch.hub.get_dir(), 'checkpoints', file_name)]
    for candidate in candidates:
        if osp.isfile(candidate):
            return candidate
    raise FileNotFoundError(f'{metric}: the file {file_name} ({what}) is missing. Expected it at {candidates[0]} '
                            f'(relative to the run directory {os.getcwd()}) or at {candidates[1]}. Download {url} '
                            f"on a machine with internet and put it at {candidates[0]}, or set the metric's option "
                            f"'{option}' to its path. Nothing is downloaded at run time.")


def read_state_dict(metric, path):
    """A tensor state dict from ``path``, or a ValueError naming the metric and the file."""
    try:
        state = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as error:  # torch raises many kinds for a truncated or foreign file
        raise ValueError(f"{metric}: cannot read '{path}' as a PyTorch state dict: {error}") from error
    if not isinstance(state, dict):
        raise ValueError(f"{metric}: '{path}' holds a {type(state).__name__}, not a state dict.")
    return state


def load_exactly(metric, module, state, path, what):
    """Load ``state`` into ``module``; any missing, unexpected or mis-shaped key is a ValueError naming ``path``."""
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ValueError(f"{metric}: '{path}' does not fit {what}: {error}") from error
