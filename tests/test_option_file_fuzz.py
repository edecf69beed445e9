"""Mutations of every shipped option file (misspelt keys, misplaced blocks, wrong types, unregistered types): each is
refused at start-up by the option parser with one line naming the option, and none reaches the user as a traceback
from BasicSR, torch or OpenCV. Start-up here is BasicSR's option parsing with the package's checks (the step that
runs before any data, model or prior is built), so the ~1000 mutations take seconds. ``-s`` prints the counts."""
import copy
import glob
import random
import sys
from collections import Counter
from os import path as osp

import numpy as np
import pytest
import torch
import yaml

import basicsr.train
from basicsr_diffloss.options import UserError
from conftest import REPO, write_options

OPTION_FILES = sorted(osp.relpath(path, REPO) for path in glob.glob(osp.join(REPO, 'options', '*', '*', '*.yml')))
OUTCOMES = Counter()


def typo(key):
    """A misspelling of ``key``: two letters swapped, or a letter added."""
    if len(key) >= 3 and key[1] != key[2]:
        return key[0] + key[2] + key[1] + key[3:]
    return key + 'x'


def mutations(opt):
    """``(description, mutated options, the name the message must hold)`` for one option file."""
    found = []

    def mutate(description, edit, named):
        mutated = copy.deepcopy(opt)
        edit(mutated)
        found.append((description, mutated, named))

    for key in list(opt):
        mutate(f'typo {key}', lambda o, key=key: o.__setitem__(typo(key), o.pop(key)), typo(key))
    for key in list(opt.get('train') or {}):
        mutate(f'typo train.{key}', lambda o, key=key: o['train'].__setitem__(typo(key), o['train'].pop(key)),
               f'train.{typo(key)}')
    for key in ('diffusion_opt', 'pixel_opt', 'total_iter'):  # a train block or value at the top level
        if key in (opt.get('train') or {}):
            mutate(f'train.{key} at the top level', lambda o, key=key: o.__setitem__(key, o['train'].pop(key)), key)
    for key in ('network_g', 'val', 'scale'):  # a top-level block or value under train
        if key in opt and 'train' in opt:
            mutate(f'{key} under train', lambda o, key=key: o['train'].__setitem__(key, o.pop(key)), key)
    wrong_values = [('num_gpu', 'one'), ('scale', 'four'), ('manual_seed', 'seed'), ('network_g', 'EDSR'),
                    ('datasets', ['train'])]
    for key, value in wrong_values:
        if key in opt:
            mutate(f'{key}: {value!r}', lambda o, key=key, value=value: o.__setitem__(key, value), key)
    for key, value in (('total_iter', 'many'), ('warmup_iter', 1.5), ('diffusion_opt', 'DiffLoss')):
        if key in (opt.get('train') or {}):
            mutate(f'train.{key}: {value!r}', lambda o, key=key, value=value: o['train'].__setitem__(key, value), key)
    mutate('model_type misspelt', lambda o: o.__setitem__('model_type', typo(o['model_type'])), typo(opt['model_type']))
    mutate('network_g type misspelt', lambda o: o['network_g'].__setitem__('type', typo(o['network_g']['type'])),
           typo(opt['network_g']['type']))
    network_option = next(key for key in opt['network_g'] if key != 'type')
    mutate(f'network_g.{network_option} misspelt',
           lambda o: o['network_g'].__setitem__(typo(network_option), o['network_g'].pop(network_option)),
           typo(network_option))
    prior = ((opt.get('train') or {}).get('diffusion_opt') or {}).get('prior')
    if prior:
        key = next(key for key in prior if key != 'type')
        mutate(f'train.diffusion_opt.prior.{key} misspelt',
               lambda o: o['train']['diffusion_opt']['prior'].__setitem__(typo(key), o['train']['diffusion_opt']
                                                                          ['prior'].pop(key)), typo(key))
    return found


@pytest.fixture
def kept_random_states():
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    yield
    random.setstate(states[0])
    np.random.set_state(states[1])
    torch.set_rng_state(states[2])


def start_up(option_file, is_train):
    saved = sys.argv
    sys.argv = ['basicsr-diffloss-train', '-opt', option_file]
    try:
        return basicsr.train.parse_options(osp.dirname(option_file), is_train=is_train)
    finally:
        sys.argv = saved


@pytest.mark.usefixtures('kept_random_states')
@pytest.mark.parametrize('option_file', OPTION_FILES)
def test_every_mutation_is_refused_at_start_up_naming_the_option(option_file, tmp_path, capsys):
    with open(osp.join(REPO, option_file)) as f:
        opt = yaml.safe_load(f)
    is_train = option_file.split(osp.sep)[1] == 'train'
    start_up(write_options(opt, tmp_path / 'unchanged.yml'), is_train)  # the shipped file itself starts
    problems = []
    for index, (description, mutated, named) in enumerate(mutations(opt)):
        try:
            start_up(write_options(mutated, tmp_path / f'mutation{index}.yml'), is_train)
        except UserError as error:
            message = str(error)
            outcome = 'refused, naming the option' if named in message and '\n' not in message else 'refused unclearly'
        except Exception as error:  # noqa: BLE001  (what a user would have seen as a traceback)
            message, outcome = f'{type(error).__name__}: {error}', 'traceback'
        else:
            message, outcome = '', 'accepted'
        OUTCOMES[outcome] += 1
        if outcome != 'refused, naming the option':
            problems.append(f'{description} ({named!r}): {outcome}: {message}')
    capsys.readouterr()
    assert not problems, f'{option_file}:\n' + '\n'.join(problems)


def test_counts():
    """Printed with -s: how many mutations were tried and what became of them."""
    print(f'\n{len(OPTION_FILES)} option files, {sum(OUTCOMES.values())} mutations: {dict(OUTCOMES)}')
    assert sum(OUTCOMES.values()) > 10 * len(OPTION_FILES)
