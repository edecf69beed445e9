"""Every replacement of a BasicSR (and Real-ESRGAN) symbol, installed here, each once, with the repair it makes.

``PATCHES`` lists them as ``(object, attribute, replacement, why)``; :func:`install` (run once, at the end of
``import basicsr_diffloss``) sets each and refuses a symbol listed twice. The repairs themselves live where they
belong: ``compat.py`` (basicsr 1.4.2's breakages), ``models/exact_resume.py`` (resume), ``models/with_diffloss.py``
(``train.diffusion_opt`` in any model), ``option_keys.py`` (unknown keys), ``data/dataset_checks.py`` (data at
start-up). One module-level change happens earlier: ``compat`` registers ``torchvision.transforms.functional`` as
``torchvision.transforms.functional_tensor`` when it is imported, because basicsr imports that module on import.
tests/test_compat.py checks that this list is exactly what importing the package changes in basicsr and realesrgan.
"""
import argparse
import sys

import basicsr.models
import basicsr.models.base_model
import basicsr.test
import basicsr.train
import basicsr.utils.options

from . import compat
from .data.dataset_checks import checked_build_dataset
from .models import exact_resume
from .models.with_diffloss import build_model
from .option_keys import check_option_file


def parse_options(root_path, is_train=True):
    """BasicSR's parse_options with the seed repair (compat item 4), after the option file and its ``--force_yml``
    entries are checked (option_keys: unknown and missing keys are one-line errors instead of BasicSR's KeyError)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument('-opt')
    parser.add_argument('--force_yml', nargs='+')
    args, _ = parser.parse_known_args()
    if args.opt:
        check_option_file(args.opt, args.force_yml, is_train)
    return compat.parse_options(root_path, is_train)


def build_training_model(opt):
    """with_diffloss's build_model, then the repaired end of training (compat item 6)."""
    return compat.follow_end_of_training(build_model(opt))


PATCHES = [
    (basicsr.utils.options, 'init_dist', compat.init_dist,
     '--launcher pytorch on a machine without CUDA initialises gloo instead of NCCL (compat 3)'),
    (basicsr.models.base_model.BaseModel, 'model_to_device', compat.model_to_device,
     'DDP on the CPU wraps networks without device ids (compat 3)'),
    (basicsr.utils.options, 'parse_options', parse_options,
     '--force_yml manual_seed=N seeds the generators (compat 4); unknown keys and --force_yml paths are errors'),
    (basicsr.train, 'parse_options', parse_options, 'the same, where train_pipeline calls it'),
    (basicsr.test, 'parse_options', parse_options, 'the same, where test_pipeline calls it'),
    (basicsr.train, 'MessageLogger', compat.MessageLogger, 'the time left is never negative (compat 5)'),
    (basicsr.train, 'build_model', build_training_model,
     'train.diffusion_opt in any model (with_diffloss); no second final validation of the same weights (compat 6)'),
    (basicsr.models, 'build_model', build_model, 'train.diffusion_opt in any model (with_diffloss)'),
    (basicsr.test, 'build_model', build_model, 'the same, where test_pipeline calls it'),
    (basicsr.train, 'train_pipeline', compat.train_pipeline, 'the process group is destroyed at the end (compat 9)'),
    (basicsr.train, 'load_resume_state', exact_resume.load_resume_state,
     'resume on a machine without CUDA (compat 2); --auto_resume skips unreadable states; bad states refused in one '
     'line; the resumed data position recorded (exact_resume)'),
    (basicsr.train, 'create_train_val_dataloader', exact_resume.create_train_val_dataloader,
     'the resumed epoch continues after the batches already trained on (exact_resume)'),
    (basicsr.train, 'build_dataset', checked_build_dataset,
     'empty sets, files that are no images and scale mismatches named at start-up (dataset_checks)'),
    (basicsr.test, 'build_dataset', checked_build_dataset, 'the same, where test_pipeline calls it'),
]
for _model_class in compat.REAL_ESRGAN_MODELS:
    PATCHES += [(_model_class, name, compat.on_model_device(vars(_model_class)[name]),
                 f'.cuda() means the model\'s device in {_model_class.__name__}.{name} (compat 7)')
                for name in compat.CUDA_CALLING_METHODS if name in vars(_model_class)]
    PATCHES.append((sys.modules[_model_class.__module__], 'filter2D', compat.filter2D,
                    f'filter2D on non-contiguous tensors, as {_model_class.__name__} calls it (compat 8)'))


def install():
    """Set every patch; a symbol listed twice, or already replaced, is a bug here."""
    seen = set()
    for owner, name, replacement, _ in PATCHES:
        key = (id(owner), name)
        assert key not in seen, f'{owner.__name__}.{name} is patched twice'
        seen.add(key)
        if getattr(owner, name) is not replacement:
            setattr(owner, name, replacement)
