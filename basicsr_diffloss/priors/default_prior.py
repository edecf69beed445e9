"""The prior shipped in the package: a diffusers folder with its MODEL_CARD.md (``basicsr_diffloss/priors/default``).

``DiffusionPrior(pretrained='default')``, or a DiffusionPrior with neither ``pretrained`` nor ``unet``, loads it.
"""
from os import path as osp

DEFAULT_PRIOR = osp.join(osp.dirname(osp.abspath(__file__)), 'default')
