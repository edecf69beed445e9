"""DiffusionPrior and its loaders: diffusers folders, Stable Diffusion-family pipelines, guided-diffusion (ADM)
checkpoints, the shipped default.

A new prior format is one new loader file here, called from ``diffusion_prior_arch._load``.
"""
from .default_prior import DEFAULT_PRIOR
from .diffusers_folder import load_unet_strict
from .diffusion_prior_arch import DTYPES, EXECUTION_OPTIONS, DiffusionPrior, resolve_dtype
from .guided_diffusion import (MODELS, NotRepresentableError, convert_state_dict, load_checkpoint,
                               load_guided_diffusion, resolve_flags, scheduler_config, unet_config)
from .latent_encoder import LatentEncoder
from .stable_diffusion import PIPELINES, load_stable_diffusion_folder
from .text_conditioning import TextConditioning

__all__ = ['DEFAULT_PRIOR', 'DTYPES', 'DiffusionPrior', 'EXECUTION_OPTIONS', 'LatentEncoder', 'MODELS', 'NotRepresentableError', 'PIPELINES',
           'TextConditioning', 'convert_state_dict', 'load_checkpoint', 'load_guided_diffusion',
           'load_stable_diffusion_folder', 'load_unet_strict', 'resolve_dtype', 'resolve_flags', 'scheduler_config',
           'unet_config']
