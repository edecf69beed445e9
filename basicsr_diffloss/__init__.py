"""basicsr-diffloss: a diffusion prior as a training constraint for BasicSR restorers.

Importing the package registers DiffusionPrior, DiffLoss, the restorers, models and datasets in BasicSR's
registries, then installs every replacement of a BasicSR symbol (``patches.PATCHES``: the repairs of basicsr 1.4.2,
exact resume, ``train.diffusion_opt`` in any model, the start-up checks).
"""
# isort: off
from . import compat  # noqa: F401  (must run before anything imports basicsr)
from . import archs, data, losses, metrics, models, priors  # noqa: F401
from . import patches
# isort: on

patches.install()

__version__ = '0.1.0'
