"""Pretrained diffusion priors: the one shipped with the package, and those of other code bases, converted to
diffusers ``UNet2DModel``."""
from os import path as osp

from .guided_diffusion import (PRESETS, NotRepresentableError, convert_state_dict, load_checkpoint,
                               load_guided_diffusion, resolve_flags, scheduler_config, unet_config)

# The default prior shipped in the package (a diffusers folder with its MODEL_CARD.md): what
# ``DiffusionPrior(pretrained='default')``, or a DiffusionPrior with neither ``pretrained`` nor ``unet``, loads.
DEFAULT_PRIOR = osp.join(osp.dirname(osp.abspath(__file__)), 'default')

__all__ = ['DEFAULT_PRIOR', 'PRESETS', 'NotRepresentableError', 'convert_state_dict', 'load_checkpoint', 'load_guided_diffusion',
           'resolve_flags', 'scheduler_config', 'unet_config']
