"""Start-up checks of an option file's keys: a misspelt or misplaced key is an error naming the nearest known one.

BasicSR reads the keys it knows and ignores the rest, so ``train.diffusion_opts`` or a top-level ``diffusion_opt``
trained plain L1 without a word, and ``--force_yml train:total_itre=5`` changed nothing. :func:`check_option_file`
checks, before BasicSR parses the file (whose own errors are bare ``KeyError``s), the ``--force_yml`` entries
(:func:`check_force_yml`), then the file with them applied (:func:`check_option_keys`):

- the keys BasicSR needs (``REQUIRED_KEYS``, and ``train``/``logger`` in training);

- the top-level keys and the ``train`` keys, against what BasicSR's pipeline reads (``PIPELINE_KEYS``,
  ``PIPELINE_TRAIN_KEYS``) and what the model type's own code reads (``self.opt['key']``, ``train_opt['key']`` in
  the modules of its classes: Real-ESRGAN's degradation keys, DiffusionPriorModel's ``noise_schedule``, ...);
- ``model_type`` and each block built from a registry (``network_g``, ``network_d``, ``train.*_opt``,
  ``train.diffusion_opt.prior``): its ``type`` must be registered, and its keys must be arguments of that class or
  function (when it takes no ``**kwargs``);
- values BasicSR uses late (``scale``, ``num_gpu``, ``train.total_iter``, ``train.warmup_iter``) and blocks that
  must be blocks.
"""
import copy
import difflib
import functools
import inspect
import os
import re
import sys

import yaml
from basicsr.utils.options import _postprocess_yml_value
from basicsr.utils.registry import ARCH_REGISTRY, LOSS_REGISTRY, MODEL_REGISTRY

from .compat import check_seed
from .models.diffloss_model import DiffLossSRModel
from .options import OptionError, number

# What BasicSR's option parser, train and test pipelines, data loaders and BaseModel read, and what they set.
PIPELINE_KEYS = {
    'name', 'model_type', 'scale', 'num_gpu', 'manual_seed', 'datasets', 'network_g', 'path', 'train', 'val',
    'logger', 'dist_params', 'find_unused_parameters', 'is_train', 'dist', 'rank', 'world_size', 'auto_resume',
    'root_path', 'resume_position'
}
PIPELINE_TRAIN_KEYS = {'total_iter', 'warmup_iter', 'ema_decay', 'optim_g', 'scheduler', 'pixel_opt', 'diffusion_opt'}
REQUIRED_KEYS = ('name', 'model_type', 'num_gpu', 'datasets', 'path')  # BasicSR's parse_options reads these
BLOCKS = ('datasets', 'path', 'network_g', 'network_d', 'train', 'val', 'logger')
TOP_LEVEL_READ = re.compile(r"\bopt(?:\.get\(|\[)\s*['\"](\w+)['\"]")
TRAIN_READ = re.compile(r"(?:\btrain_opt|\bopt\[['\"]train['\"]\])(?:\.get\(|\[)\s*['\"](\w+)['\"]")


def nearest(name, known, path=(), otherwise=''):
    """``: did you mean '<path>.<x>'?`` for the known name closest to ``name``, else ``otherwise``."""
    close = difflib.get_close_matches(str(name), sorted(map(str, known)), n=1, cutoff=0.6)
    return f": did you mean '{_where(path, close[0])}'?" if close else otherwise


def _where(path, key):
    return '.'.join([*path, str(key)])


def _not_read(key, known, path):
    """The end of a message about a key nothing reads, with the nearest known key."""
    return f"'{_where(path, key)}' is not an option that BasicSR or this package reads" + nearest(
        key, known, path, '; remove it, or check where it belongs (docs/training.md).')


@functools.lru_cache(maxsize=None)
def keys_read_by(model_class):
    """``(top-level keys, train keys)`` that the modules of ``model_class``'s classes read from the options."""
    top, train = set(), set()
    for module_name in {klass.__module__ for klass in inspect.getmro(model_class)}:
        try:
            source = inspect.getsource(sys.modules[module_name])
        except (KeyError, OSError, TypeError):
            continue
        train |= set(TRAIN_READ.findall(source))
        top |= set(TOP_LEVEL_READ.findall(source))
    return top, train


def known_keys(opt):
    """``(top-level keys, train keys)`` that the option file's model type and BasicSR read."""
    top, train = set(PIPELINE_KEYS), set(PIPELINE_TRAIN_KEYS)
    model_class = MODEL_REGISTRY._obj_map.get(opt.get('model_type'))
    if model_class is not None:
        for klass in (model_class, DiffLossSRModel):  # DiffLossSRModel: the mixins a diffusion_opt adds
            model_top, model_train = keys_read_by(klass)
            top |= model_top
            train |= model_train
    return top, train


def _refuse_unknown(keys, known, path):
    for key in keys:
        if key not in known:
            raise OptionError(f'Option {_not_read(key, known, path)}')


def _registered(registry, owner, block):
    """The class or function that ``block['type']`` names in ``registry``; an error with the nearest name if none."""
    kind = block.get('type')
    if kind not in registry:
        raise OptionError(f"{owner} option 'type': {kind!r} is not registered in BasicSR's {registry._name} "
                          f"registry{nearest(kind, registry.keys(), otherwise='.')}")
    return registry._obj_map[kind]


def _swallows_keywords(target, parameters):
    """Whether ``target`` takes ``**kwargs`` and never uses them (BasicSR's SwinIR does): a misspelt option given
    there would be dropped without a word."""
    name = next(p.name for p in parameters.values() if p.kind is inspect.Parameter.VAR_KEYWORD)
    try:
        source = inspect.getsource(target.__init__ if inspect.isclass(target) else target)
    except (OSError, TypeError):
        return False
    return len(re.findall(rf'\b{name}\b', source)) == 1


def _check_arguments(owner, block, target):
    """Each key of ``block`` (but ``type``) must be an argument of ``target``, unless it takes ``**kwargs`` that it
    uses (passes on or checks itself)."""
    try:
        parameters = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()) and \
            not _swallows_keywords(target, parameters):
        return
    names = [name for name, p in parameters.items() if name != 'self' and p.kind is not inspect.Parameter.VAR_KEYWORD]
    for key, value in block.items():
        if key != 'type' and key not in names:
            raise OptionError(f"{owner} option '{key}': {value!r} is not an option of {block['type']}"
                              f"{nearest(key, names, otherwise=f'; it takes {names}.')}")


def _check_block(registry, owner, block):
    if isinstance(block, dict) and 'type' in block:
        _check_arguments(owner, block, _registered(registry, owner, block))


def check_option_keys(opt, is_train=True):
    """Raise an OptionError naming the first missing or unknown key, unregistered type, misplaced block or value
    BasicSR would fail on late, of ``opt`` (an option file as loaded, ``--force_yml`` applied)."""
    if not isinstance(opt, dict):
        raise OptionError(f'The option file holds {type(opt).__name__} {opt!r}, not a YAML mapping of options.')
    if 'diffusion_opt' in opt:
        raise OptionError("Option 'diffusion_opt' is at the top level, where nothing reads it: did you mean "
                          "'train.diffusion_opt'? Move the block under train.")
    required = REQUIRED_KEYS + (('train', 'logger') if is_train else ())
    missing = [key for key in required if key not in opt]
    for key in opt:  # a misspelt required key
        if key not in required and nearest(key, missing):
            raise OptionError(f'Option {_not_read(key, missing, [])}')
    if missing:
        raise OptionError(f"Option '{missing[0]}' is missing; BasicSR needs {list(required)} in "
                          f"{'a training' if is_train else 'a test'} option file.")
    if opt['model_type'] not in MODEL_REGISTRY:
        raise OptionError(f"Option 'model_type': {opt['model_type']!r} is not a registered model"
                          f"{nearest(opt['model_type'], MODEL_REGISTRY.keys(), otherwise='.')}")
    top, train_keys = known_keys(opt)
    _refuse_unknown(opt, top, [])
    for key in BLOCKS:
        if key in opt and not isinstance(opt[key], dict) and not (key == 'network_d' and opt[key] is None):
            raise OptionError(f"Option '{key}': {opt[key]!r} is not a block of options (a YAML mapping).")
    if opt.get('manual_seed') is not None:  # before BasicSR adds the rank to it
        check_seed(opt['manual_seed'], int(os.environ.get('WORLD_SIZE', 1)))
    for name in ('network_g', 'network_d'):
        _check_block(ARCH_REGISTRY, name, opt.get(name))
    if 'scale' in opt:
        number('Option file', 'scale', opt['scale'], minimum=1, integer=True)
    if opt['num_gpu'] != 'auto':
        number('Option file', 'num_gpu', opt['num_gpu'], minimum=0, integer=True)
    train = opt.get('train')
    if train is None:
        return
    _refuse_unknown(train, train_keys, ['train'])
    if is_train and 'total_iter' not in train:
        raise OptionError("Option 'train.total_iter' is missing: how many iterations to train.")
    for key in ('total_iter', 'warmup_iter'):
        if key in train:
            number('Option file', f'train.{key}', train[key], minimum=-1, integer=True)
    for key, block in train.items():
        if key.endswith('_opt') and key != 'diffusion_opt':
            _check_block(LOSS_REGISTRY, f'train.{key}', block)
    diffusion = train.get('diffusion_opt')
    if diffusion is not None and not isinstance(diffusion, dict):
        raise OptionError(f"Option 'train.diffusion_opt': {diffusion!r} is not a block of DiffLoss options "
                          '(type: DiffLoss, prior: {...}, ...).')
    if diffusion:
        _registered(LOSS_REGISTRY, 'train.diffusion_opt', diffusion)
        _check_block(ARCH_REGISTRY, 'train.diffusion_opt.prior', diffusion.get('prior'))


def check_force_yml(opt, entries):
    """Each ``--force_yml key:sub=value`` entry must reach into sections the option file has, and a key it adds at
    the top level or under ``train`` must be one that is read (checked again with the rest by check_option_keys)."""
    top, train = known_keys(opt)
    known = {(): top, ('train', ): train}
    for entry in entries or ():
        if '=' not in entry:
            raise OptionError(f"--force_yml entry '{entry}' must look like key:sub=value (e.g. train:total_iter=5).")
        *parents, last = [key.strip() for key in entry.split('=', 1)[0].split(':')]
        node, path = opt, []
        for key in parents:
            if not isinstance(node.get(key), dict):
                choices = set(node) | known.get(tuple(path), set())
                raise OptionError(f"--force_yml entry '{entry}': the option file has no section "
                                  f"'{_where(path, key)}'{nearest(key, choices, path, '.')}")
            node, path = node[key], path + [key]
        if last not in node and tuple(path) in known and last not in known[tuple(path)]:
            raise OptionError(f"--force_yml entry '{entry}': {_not_read(last, known[tuple(path)], path)}")


def apply_force_yml(opt, entries):
    """``opt`` with BasicSR's ``--force_yml key:sub=value`` entries applied (values parsed as BasicSR does)."""
    opt = copy.deepcopy(opt)
    for entry in entries or ():
        if '=' not in entry:
            raise OptionError(f"--force_yml entry '{entry}' must look like key:sub=value (e.g. train:total_iter=5).")
        keys, value = (part.strip() for part in entry.split('=', 1))
        *parents, last = keys.split(':')
        node = opt
        for key in parents:
            if not isinstance(node.get(key), dict):
                raise OptionError(f"--force_yml entry '{entry}': the option file has no '{key}' section.")
            node = node[key]
        node[last] = _postprocess_yml_value(value)
    return opt


def check_option_file(path, force_yml=None, is_train=True):
    """Check the option file ``path`` with its ``--force_yml`` entries, before BasicSR parses it."""
    with open(path) as f:
        opt = yaml.safe_load(f)
    if force_yml:
        check_force_yml(opt if isinstance(opt, dict) else {}, force_yml)
    check_option_keys(apply_force_yml(opt, force_yml), is_train)
