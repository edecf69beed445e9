"""``train.diffusion_opt`` in any BasicSR-style model's option file: the model gains DiffLoss when it is built.

BasicSR builds ``MODEL_REGISTRY.get(opt['model_type'])(opt)``. :func:`build_model` (installed as
``basicsr.models.build_model``, which ``basicsr.train`` and ``basicsr.test`` call) builds, for an option file with
``train.diffusion_opt``, the registered class combined with the package's mixins instead::

    DiffLoss<Model>(ValidationMixin, DiffusionConstraintMixin, ReliableTrainingMixin, <Model>)

so that ``model_type: SRModel``, ``ESRGANModel``, ``SwinIRModel``, ``RealESRNetModel``, ``RealESRGANModel`` (or any
model that judges the restorer's output through ``self.cri_pix``) keeps its own data feeding, training step and
test-time behaviour, and gains the diffusion term, its logged terms, the start-up checks, non-finite handling, exact
resume and NaN-aware validation. ``SRModel`` and ``ESRGANModel`` give the registered ``DiffLossSRModel`` and
``DiffLossESRGANModel``. Without ``train.diffusion_opt`` the registered class is built unchanged.

A model that cannot take the term fails here, before anything is built: one whose training step never reaches
``self.cri_pix`` (it judges the output elsewhere), and, once built, one without a ``cri_pix`` slot
(DiffusionConstraintMixin). A model with a validation of its own (other than SRModel's, or Real-ESRGAN's, which only
turns off ``is_train``) keeps it, and the log says that its metrics are not NaN-aware. In training, a DiffLoss
model type (``DiffLossSRModel``, ``DiffLossESRGANModel``) without ``train.diffusion_opt`` is an error: it would train
without the term. ``basicsr_diffloss.patches`` installs :func:`build_model` in BasicSR.
"""
import inspect
from copy import deepcopy
from urllib.error import URLError

from basicsr.archs import vgg_arch
from basicsr.models.esrgan_model import ESRGANModel
from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger
from basicsr.utils.registry import MODEL_REGISTRY

from ..options import UserError
from .diffloss_model import DiffLossESRGANModel, DiffLossSRModel, DiffusionConstraintMixin
from .diffusion_prior_model import DiffusionPriorModel
from .exact_resume import ReliableTrainingMixin
from .validation import ValidationMixin

# Validations that are SRModel's with is_train turned off around it (ValidationMixin does the same).
SRMODEL_LIKE_VALIDATIONS = {'RealESRNetModel', 'RealESRGANModel'}
_combined = {SRModel: DiffLossSRModel, ESRGANModel: DiffLossESRGANModel}


class ModelTypeError(UserError, TypeError):
    """A model type that cannot train with the option file's ``train.diffusion_opt`` (or lack of it)."""


def _names(code):
    """Every name a function's code (and the code nested in it) refers to."""
    names = set(code.co_names)
    for const in code.co_consts:
        if inspect.iscode(const):
            names |= _names(const)
    return names


def _reaches_cri_pix(model_class, start=0, method='optimize_parameters', seen=None):
    """Whether ``model_class``'s ``method`` (looked up from ``__mro__[start]``) uses ``self.cri_pix``, directly, in a
    method of the model it calls, or through ``super()``."""
    seen = set() if seen is None else seen
    mro = model_class.__mro__
    index = next((i for i in range(start, len(mro)) if method in vars(mro[i])), None)
    if index is None or (index, method) in seen:
        return False
    seen.add((index, method))
    function = inspect.unwrap(vars(mro[index])[method])
    code = getattr(function, '__code__', None)
    if code is None:
        return False
    names = _names(code)
    if 'cri_pix' in names:
        return True
    if 'super' in names and _reaches_cri_pix(model_class, index + 1, method, seen):
        return True
    return any(_reaches_cri_pix(model_class, 0, name, seen) for name in names
               if name != method and inspect.isfunction(getattr(model_class, name, None)))


def _has_srmodel_validation(model_class):
    owner = next(klass for klass in model_class.__mro__ if 'nondist_validation' in vars(klass))
    return owner is SRModel or (owner.__name__ in SRMODEL_LIKE_VALIDATIONS and
                                owner.__module__.split('.')[0] in ('basicsr', 'realesrgan'))


def with_diffloss(model_class, model_type=None):
    """``model_class`` combined with the DiffLoss mixins (cached); raises if it cannot take the term."""
    model_type = model_type or model_class.__name__
    if issubclass(model_class, DiffusionConstraintMixin):
        return model_class
    if issubclass(model_class, DiffusionPriorModel):
        raise ModelTypeError(f'train.diffusion_opt: model_type {model_type} trains a diffusion prior, not a restorer; '
                        'remove train.diffusion_opt.')
    if not _reaches_cri_pix(model_class):
        raise ModelTypeError(f'train.diffusion_opt: model_type {model_type} ({model_class.__module__}) judges the '
                        "restorer's output without self.cri_pix: its optimize_parameters never uses the pixel-loss "
                        'slot through which DiffLoss joins a BasicSR training step, so the term would never be '
                        'applied. Use a model that calls self.cri_pix(output, gt) (SRModel, ESRGANModel, '
                        'SwinIRModel, RealESRNetModel, RealESRGANModel, ...) or remove train.diffusion_opt.')
    if model_class not in _combined:
        mixins = (ValidationMixin, ) if _has_srmodel_validation(model_class) else ()
        mixins += (DiffusionConstraintMixin, ReliableTrainingMixin)
        name = f'DiffLoss{model_class.__name__}'
        _combined[model_class] = type(name, mixins + (model_class, ), {
            '__module__': __name__,
            '__doc__': f'{model_class.__name__} ({model_class.__module__}) with train.diffusion_opt (with_diffloss).'
        })
    return _combined[model_class]


def _vgg_weights_error(opt, error):
    """A URLError while building a model with a perceptual loss: the VGG weights were not found offline."""
    perceptual = (opt.get('train') or {}).get('perceptual_opt')
    if not perceptual:
        return error
    return RuntimeError(
        f"train.perceptual_opt ({perceptual.get('type')}, {perceptual.get('vgg_type', 'vgg19')}): the VGG weights "
        f"are not at '{vgg_arch.VGG_PRETRAIN_PATH}' (relative to the directory you run from), so torchvision tried to "
        f'download them and could not ({error}). On a machine without internet put torchvision\'s '
        "vgg19-dcbb9e9d.pth (https://download.pytorch.org/models/vgg19-dcbb9e9d.pth) there.")


def build_model(opt):
    """BasicSR's build_model; with ``train.diffusion_opt`` the registered model gains DiffLoss (module docstring)."""
    opt = deepcopy(opt)
    model_class = MODEL_REGISTRY.get(opt['model_type'])
    logger = get_root_logger()
    diffusion_opt = (opt.get('train') or {}).get('diffusion_opt')
    if diffusion_opt:
        model_class = with_diffloss(model_class, opt['model_type'])
        if diffusion_opt.get('loss_weight') == 0:
            logger.warning('train.diffusion_opt.loss_weight: 0 turns the term off: every diffusion term is 0 and the '
                           'prior never runs, so the run trains with the pixel loss alone; remove '
                           'train.diffusion_opt for a run without the term, or set loss_weight > 0.')
        if not issubclass(model_class, ValidationMixin):
            logger.warning(f"{opt['model_type']} validates with its own nondist_validation, which is kept: its "
                           'metric means are not NaN-aware and val.prior_diagnostics is not drawn.')
    elif opt.get('is_train') and issubclass(model_class, DiffusionConstraintMixin):
        plain = next(klass for klass in model_class.__mro__ if klass in _combined).__name__
        raise ModelTypeError(f"model_type {opt['model_type']} without train.diffusion_opt trains {plain} alone, "
                             'with no diffusion term: add a train.diffusion_opt block (README), or write model_type: '
                             f'{plain} for a run without DiffLoss.')
    try:
        model = model_class(opt)
    except URLError as error:
        raise _vgg_weights_error(opt, error) from error
    logger.info(f'Model [{model.__class__.__name__}] is created.')
    return model
