"""Losses registered in BasicSR's LOSS_REGISTRY on import."""
from .diffloss_loss import PRESETS, DiffLoss

__all__ = ['DiffLoss', 'PRESETS']
