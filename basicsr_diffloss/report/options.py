"""Option files of a comparison: loading, and the baseline derived from a +DiffLoss file."""
import copy
import os
from os import path as osp

import yaml

# Names of an existing baseline twin of ``<stem>_diffloss.yml``, as in tests/test_option_files.py.
TWIN_SETTINGS = ('baseline', 'l1')
# The model a DiffLoss model type is without train.diffusion_opt (which it needs in training).
PLAIN_MODEL_TYPES = {'DiffLossSRModel': 'SRModel', 'DiffLossESRGANModel': 'ESRGANModel'}


def load_option_file(path):
    with open(path) as f:
        return yaml.safe_load(f)


def write_option_file(opt, path, header=''):
    with open(path, 'w') as f:
        f.write(header)
        yaml.safe_dump(opt, f, sort_keys=False)
    return path


def differences(first, second, prefix=''):
    """Dotted keys whose values differ between two option dicts."""
    if not (isinstance(first, dict) and isinstance(second, dict)):
        return [] if first == second else [prefix or '(whole file)']
    found = []
    for key in list(first) + [key for key in second if key not in first]:
        where = f'{prefix}.{key}' if prefix else str(key)
        if key not in first or key not in second:
            found.append(where)
        else:
            found.extend(differences(first[key], second[key], where))
    return found


def comparable_differences(baseline, diffloss):
    """What differs between a baseline and a +DiffLoss option dict besides ``name`` and ``train.diffusion_opt``."""
    baseline, diffloss = copy.deepcopy(baseline), copy.deepcopy(diffloss)
    for opt in (baseline, diffloss):
        opt.pop('name', None)
        opt.get('train', {}).pop('diffusion_opt', None)
        if opt.get('model_type') in PLAIN_MODEL_TYPES:
            opt['model_type'] = PLAIN_MODEL_TYPES[opt['model_type']]
    return differences(baseline, diffloss)


def derive_baseline(diffloss_opt):
    """The +DiffLoss options without ``train.diffusion_opt``, named with 'baseline' instead of 'diffloss', with the
    plain model type of a DiffLoss one (``DiffLossSRModel`` -> ``SRModel``)."""
    if not (diffloss_opt.get('train') or {}).get('diffusion_opt'):
        raise ValueError('The option file has no train.diffusion_opt, so there is no +DiffLoss run to compare: give '
                         'the +DiffLoss option file with -opt (and the baseline with --baseline_opt if you have one).')
    baseline = copy.deepcopy(diffloss_opt)
    del baseline['train']['diffusion_opt']
    baseline['model_type'] = PLAIN_MODEL_TYPES.get(baseline.get('model_type'), baseline.get('model_type'))
    name = diffloss_opt['name']
    baseline['name'] = name.replace('diffloss', 'baseline') if 'diffloss' in name else f'{name}_baseline'
    return baseline


def baseline_option_file(diffloss_file):
    """The baseline option file of ``diffloss_file``: an existing twin with the same options (``<stem>_baseline.yml``
    or ``<stem>_l1.yml`` for ``<stem>_diffloss.yml``), else ``<stem>_baseline.yml`` written next to it.

    A twin that differs in more than ``name`` and ``train.diffusion_opt`` (and a DiffLoss model type against its
    plain one) is an error: pass the pair explicitly.
    """
    folder, file_name = osp.split(diffloss_file)
    stem = osp.splitext(file_name)[0]
    stem = stem[:-len('_diffloss')] if stem.endswith('_diffloss') else stem
    derived = derive_baseline(load_option_file(diffloss_file))
    for setting in TWIN_SETTINGS:
        twin = osp.join(folder, f'{stem}_{setting}.yml')
        if osp.isfile(twin):
            extra = comparable_differences(load_option_file(twin), derived)
            if extra:
                raise ValueError(f'{twin} exists but differs from {diffloss_file} in {extra}, not only in name and '
                                 'train.diffusion_opt. Pass the pair explicitly (-opt and --baseline_opt), or move it.')
            return twin
    path = osp.join(folder, f'{stem}_baseline.yml')
    header = (f'# Written by basicsr-diffloss-compare: {file_name} without train.diffusion_opt (the baseline of the '
              'comparison).\n')
    os.makedirs(folder or '.', exist_ok=True)
    return write_option_file(derived, path, header)
