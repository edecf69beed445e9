"""Networks registered in BasicSR's ARCH_REGISTRY on import."""
from .diffusion_prior_arch import DiffusionPrior, load_unet_strict

__all__ = ['DiffusionPrior', 'load_unet_strict']
