"""Models registered in BasicSR's MODEL_REGISTRY on import, and ``build_model`` that gives any registered model
``train.diffusion_opt`` (with_diffloss.py)."""
from .diffloss_model import DiffLossESRGANModel, DiffLossSRModel, DiffusionConstraintMixin, PixelAndDiffusionLoss
from .diffusion_prior_model import DiffusionPriorModel
from .exact_resume import ReliableTrainingMixin, atomic_torch_save
from .with_diffloss import build_model, with_diffloss

__all__ = [
    'DiffLossESRGANModel', 'DiffLossSRModel', 'DiffusionConstraintMixin', 'DiffusionPriorModel',
    'PixelAndDiffusionLoss', 'ReliableTrainingMixin', 'atomic_torch_save', 'build_model', 'with_diffloss'
]
