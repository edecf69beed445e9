"""Models registered in BasicSR's MODEL_REGISTRY on import."""
from .diffloss_model import DiffLossESRGANModel, DiffLossSRModel, DiffusionConstraintMixin, PixelAndDiffusionLoss
from .diffusion_prior_model import DiffusionPriorModel
from .reliable_training import ReliableTrainingMixin, atomic_torch_save

__all__ = [
    'DiffLossESRGANModel', 'DiffLossSRModel', 'DiffusionConstraintMixin', 'DiffusionPriorModel',
    'PixelAndDiffusionLoss', 'ReliableTrainingMixin', 'atomic_torch_save'
]
