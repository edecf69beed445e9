"""Losses registered in BasicSR's LOSS_REGISTRY on import."""
from .diffloss_loss import PAPER_EPS_WEIGHT, PAPER_H_WEIGHT, DiffLoss

__all__ = ['DiffLoss', 'PAPER_EPS_WEIGHT', 'PAPER_H_WEIGHT']
