"""Datasets registered in BasicSR's DATASET_REGISTRY on import."""
from .degradation_dataset import DegradedImageDataset
from .image_crop_dataset import ImageCropDataset

__all__ = ['DegradedImageDataset', 'ImageCropDataset']
