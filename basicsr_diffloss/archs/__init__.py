"""Networks registered in BasicSR's ARCH_REGISTRY on import."""
from .diffusion_prior_arch import DiffusionPrior, load_unet_strict
from .iat_arch import IAT
from .nafnet_arch import NAFNet
from .padded_swinir_arch import PaddedSwinIR

__all__ = ['DiffusionPrior', 'IAT', 'NAFNet', 'PaddedSwinIR', 'load_unet_strict']
