"""Pretrained diffusion priors from other code bases, converted to diffusers ``UNet2DModel``."""
from .guided_diffusion import (PRESETS, NotRepresentableError, convert_state_dict, load_checkpoint,
                               load_guided_diffusion, resolve_flags, scheduler_config, unet_config)

__all__ = ['PRESETS', 'NotRepresentableError', 'convert_state_dict', 'load_checkpoint', 'load_guided_diffusion',
           'resolve_flags', 'scheduler_config', 'unet_config']
