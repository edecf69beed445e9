"""Datasets registered in BasicSR's DATASET_REGISTRY on import."""
from .image_crop_dataset import ImageCropDataset

__all__ = ['ImageCropDataset']
