"""Restoration networks registered in BasicSR's ARCH_REGISTRY on import (the diffusion prior is in ``priors``)."""
from .iat_arch import IAT
from .nafnet_arch import NAFNet, NAFNetLocal

__all__ = ['IAT', 'NAFNet', 'NAFNetLocal']
