"""basicsr-diffloss: a diffusion prior as a training constraint for BasicSR restorers.

Importing the package repairs basicsr 1.4.2 (``compat``) and registers DiffusionPrior, DiffLoss, the restorers,
models and datasets in BasicSR's registries.
"""
# isort: off
from . import compat  # noqa: F401  (must run before anything imports basicsr)
from . import archs, data, losses, metrics, models, priors  # noqa: F401
# isort: on

__version__ = '0.1.0'
