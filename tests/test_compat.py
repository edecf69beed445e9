"""basicsr_diffloss.compat: repairs of basicsr 1.4.2 (seed overrides, eta, the final validation); the split between
it and the one exact-resume module; basicsr_diffloss.patches: the one list of what the package replaces in BasicSR."""
import ast
import glob
import json
import random
import re
import subprocess
import sys
from os import path as osp

import numpy as np
import pytest
import torch

import basicsr.train
from basicsr_diffloss.models import exact_resume
from conftest import REPO, run_module, run_modules_side_by_side, tiny_demo_run, write_options

PACKAGE = osp.join(REPO, 'basicsr_diffloss')
ETA = re.compile(r'\[eta: (.*?), time \(data\)')
TRAINING_LINE = re.compile(r'iter:\s+([\d,]+), lr:.*\[eta: (.*?), time')
VALIDATION_HEADER = re.compile(r'INFO: Validation (\w+), iter (\d+)')


def module_tree(relative_path):
    with open(osp.join(PACKAGE, relative_path)) as f:
        return ast.parse(f.read())


def defined_names(tree):
    return {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}


def own_package_imports(tree):
    """Modules of this package that a module imports (relative or absolute)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or '').startswith('basicsr_diffloss')):
            found.add(node.module or '.')
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith('basicsr_diffloss'))
    return found


# 1. One resume module, one list of patches.
def test_exact_resume_is_one_module_and_compat_holds_only_basicsr_repairs():
    compat, resume = module_tree('compat.py'), module_tree(osp.join('models', 'exact_resume.py'))
    assert own_package_imports(compat) <= {'options'}, 'compat runs first: it imports only the option checker'
    resume_names = {
        'SkipFirstOnce', 'create_train_val_dataloader', 'ReliableTrainingMixin', 'atomic_torch_save',
        'load_resume_state'
    }
    assert resume_names <= defined_names(resume)
    assert not {'SkipFirstOnce', 'create_train_val_dataloader', 'atomic_torch_save', 'load_resume_state'} & \
        defined_names(compat)
    assert 'resume_position' not in ast.unparse(compat)
    assert not osp.exists(osp.join(PACKAGE, 'models', 'reliable_training.py'))
    # What train_pipeline calls: the data position and random states from exact_resume.
    assert basicsr.train.create_train_val_dataloader is exact_resume.create_train_val_dataloader
    assert basicsr.train.load_resume_state is exact_resume.load_resume_state
    with open(osp.join(PACKAGE, '__init__.py')) as f:
        imports = [line for line in f if line.startswith('from . import')]
    assert imports[0].split()[3] == 'compat'


# Run in a fresh interpreter: every basicsr (and realesrgan) module, then the package; print what changed.
WHAT_IMPORT_CHANGES = """
import inspect, json, sys
import torchvision.transforms.functional
sys.modules['torchvision.transforms.functional_tensor'] = torchvision.transforms.functional  # as compat does
import basicsr, basicsr.models.realesrgan_model, basicsr.models.realesrnet_model, basicsr.utils.img_process_util
try:
    import realesrgan.models.realesrgan_model, realesrgan.models.realesrnet_model
except ImportError:
    pass

def symbols():
    found = {}
    for name, module in list(sys.modules.items()):
        if module is None or name.split('.')[0] not in ('basicsr', 'realesrgan'):
            continue
        for attr, value in list(vars(module).items()):
            if attr.startswith('__') or inspect.ismodule(value):
                continue
            found[f'{name}.{attr}'] = value
            if inspect.isclass(value) and value.__module__ == name:
                found.update((f'{name}.{value.__qualname__}.{a}', v) for a, v in vars(value).items())
    return found

before = symbols()
from basicsr_diffloss.patches import PATCHES
after = symbols()
changed = sorted(key for key, value in before.items() if after.get(key, value) is not value)
listed = [(owner.__name__ if inspect.ismodule(owner) else f'{owner.__module__}.{owner.__qualname__}') + '.' + name
          for owner, name, _, _ in PATCHES]
print(json.dumps(dict(changed=changed, listed=listed, why=[why for *_, why in PATCHES])))
"""


def test_the_patch_list_is_exactly_what_importing_the_package_changes_in_basicsr():
    result = subprocess.run([sys.executable, '-c', WHAT_IMPORT_CHANGES], capture_output=True, text=True, cwd=REPO,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    print('\n' + '\n'.join(f'{symbol}: {why}' for symbol, why in zip(report['listed'], report['why'])))
    assert len(set(report['listed'])) == len(report['listed']), 'a symbol is replaced twice'
    assert sorted(report['listed']) == report['changed']
    assert all(why for why in report['why'])


# 2. --force_yml manual_seed=N.
@pytest.fixture
def saved_random_states():
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    yield
    random.setstate(states[0])
    np.random.set_state(states[1])
    torch.set_rng_state(states[2])


def parse(tmp_path, monkeypatch, *force_yml, manual_seed=0):
    option_file = tmp_path / 'seed.yml'
    opt = {'name': 'seed', 'model_type': 'SRModel', 'num_gpu': 0, 'datasets': {}, 'path': {}, 'logger': {},
           'train': {'total_iter': 1}}
    if manual_seed is not None:
        opt['manual_seed'] = manual_seed
    write_options(opt, option_file)
    monkeypatch.setattr(
        sys, 'argv',
        ['train', '-opt', str(option_file), *(['--force_yml', *force_yml] if force_yml else [])])
    opt, _ = basicsr.train.parse_options(str(tmp_path), is_train=True)
    return opt


def seeded_states(seed):
    random.seed(seed)
    np.random.seed(seed)
    return random.random(), np.random.random()


@pytest.mark.usefixtures('saved_random_states')
@pytest.mark.parametrize('force_yml, manual_seed, expected', [(('manual_seed=1', ), 0, 1), ((), 7, 7),
                                                              (('manual_seed=0', ), 3, 0)])
def test_force_yml_manual_seed_seeds_the_generators(tmp_path, monkeypatch, force_yml, manual_seed, expected):
    opt = parse(tmp_path, monkeypatch, *force_yml, manual_seed=manual_seed)
    assert opt['manual_seed'] == expected
    assert torch.initial_seed() == expected
    drawn = random.random(), np.random.random()
    assert drawn == seeded_states(expected)


@pytest.mark.usefixtures('saved_random_states')
@pytest.mark.parametrize('force_yml', [(), ('manual_seed=~', )])
def test_a_missing_seed_is_drawn_and_used(tmp_path, monkeypatch, force_yml):
    opt = parse(tmp_path, monkeypatch, *force_yml, manual_seed=None if not force_yml else 5)
    assert isinstance(opt['manual_seed'], int) and 1 <= opt['manual_seed'] <= 10000
    assert torch.initial_seed() == opt['manual_seed']


@pytest.mark.usefixtures('saved_random_states')
@pytest.mark.parametrize('value, shown', [('abc', "'abc'"), ('-1', "'-1'"), ('1.5', '1.5'), ('true', 'True'),
                                          (str(2**32), str(2**32))])
def test_a_bad_seed_names_option_value_and_fix(tmp_path, monkeypatch, value, shown):
    with pytest.raises(ValueError) as error:
        parse(tmp_path, monkeypatch, f'manual_seed={value}')
    print('\n' + str(error.value))
    assert str(error.value) == (f"Option 'manual_seed': {shown} is not a seed; give an integer from 0 to 4294967295 "
                                "(e.g. --force_yml manual_seed=1), or ~ for a random one.")


@pytest.fixture(scope='module')
def tiny_training(tmp_path_factory):
    """Tiny demo-layout data and the demo's option file shrunk to it: L1 + DiffLoss, 4 iterations, a 64 px val image
    (PSNR and SSIM; NIQE needs 192 px)."""
    root = tmp_path_factory.mktemp('compat')
    opt = tiny_demo_run(root, val_count=1, val_size=64)
    opt['train']['total_iter'] = 4
    opt['val']['metrics'].pop('niqe')
    opt['logger'].update(print_freq=1, save_checkpoint_freq=2)
    return root, opt


def train(root, opt, name, *args):
    opt = dict(opt, name=name)
    output = run_module('basicsr_diffloss.train', '-opt', write_options(opt, root / f'{name}.yml'), *args, cwd=root)
    return output, root / 'experiments' / name


def latest_weights(experiment):
    return torch.load(experiment / 'models' / 'net_g_latest.pth', map_location='cpu')['params']


def test_force_yml_manual_seed_changes_the_training(tiny_training):
    """The demo file says manual_seed: 0; --force_yml manual_seed=1 must train otherwise, and the same way twice."""
    root, opt = tiny_training
    opt = {key: value for key, value in opt.items() if key not in ('val', )}
    opt['datasets'] = {'train': opt['datasets']['train']}
    runs = [('seed0', 0), ('seed1', 1), ('seed1_again', 1)]  # trained side by side: they are independent
    commands = [['basicsr_diffloss.train', '-opt', write_options(dict(opt, name=name), root / f'{name}.yml'),
                 '--force_yml', f'manual_seed={seed}'] for name, seed in runs]
    outputs = run_modules_side_by_side(*commands, cwd=root)
    assert 'manual_seed: 1' in outputs[1]
    weights0, weights1, weights1_again = (latest_weights(root / 'experiments' / name) for name, _ in runs)
    assert any(not torch.equal(weights0[name], weights1[name]) for name in weights0), 'seed 1 trained as seed 0'
    for name, value in weights1.items():
        assert torch.equal(value, weights1_again[name]), name


# 3. The end of training.
class Recorder:

    def __init__(self):
        self.messages = []

    def info(self, message):
        self.messages.append(message)


def eta_seconds(text):
    """Seconds of a ``str(datetime.timedelta)``, e.g. ``-1 day, 23:59:59`` or ``0:01:05``."""
    days = 0
    if 'day' in text:
        day_part, text = text.split(', ')
        days = int(day_part.split()[0])
    hours, minutes, seconds = (int(part) for part in text.split(':'))
    return days * 86400 + hours * 3600 + minutes * 60 + seconds


def test_eta_counts_the_iterations_left_and_ends_at_zero():
    """BasicSR's eta is (elapsed / (iter + 1)) * (total - iter - 1): at the last iteration, once an iteration takes a
    second or more, it logs ``eta: -1 day, 23:59:59``."""
    opt = {'name': 'eta', 'logger': {'print_freq': 1, 'use_tb_logger': False}, 'train': {'total_iter': 4}}
    logger, recorder = basicsr.train.MessageLogger(opt, 0), Recorder()
    logger.logger = recorder
    logger.reset_start_time()  # train_pipeline does so after iteration 1
    for current_iter in (2, 3, 4):
        logger.start_time -= 10  # every iteration takes 10 s
        logger({'epoch': 0, 'iter': current_iter, 'lrs': [1e-4], 'time': 10.0, 'data_time': 0.0, 'l_pix': 0.5})
    etas = [ETA.search(message).group(1) for message in recorder.messages]
    print('\n' + '\n'.join(recorder.messages))
    assert etas == ['0:00:20', '0:00:10', '0:00:00']
    assert logger.start_iter == 0 and logger.max_iters == 4  # restored after each call


def training_log(experiment):
    return ''.join(open(f).read() for f in sorted(glob.glob(str(experiment / 'train_*.log'))))


def test_training_ends_without_validating_the_same_weights_twice(tiny_training):
    """val_freq 2 over 4 iterations: validations at 2 and 4, none after the loop (BasicSR adds one labelled 6),
    "latest" saved; resumed to 5, the final validation runs once, labelled 5 (BasicSR: 6)."""
    root, opt = tiny_training
    opt = dict(opt, val=dict(opt['val'], val_freq=2))
    _, experiment = train(root, opt, 'ending')
    log = training_log(experiment)
    print('\n' + log[log.index('iter:       3'):])
    assert [int(i) for _, i in VALIDATION_HEADER.findall(log)] == [2, 4]
    assert 'No final validation on demo_val: the weights of iteration 4 are validated above.' in log
    assert 'Best: ' in log and '@ 6 iter' not in log
    etas = dict((int(i.replace(',', '')), eta_seconds(eta)) for i, eta in TRAINING_LINE.findall(log))
    assert sorted(etas) == [1, 2, 3, 4] and min(etas.values()) >= 0 and etas[4] == 0
    assert osp.isfile(experiment / 'models' / 'net_g_latest.pth')
    first_latest = latest_weights(experiment)
    for name, value in torch.load(experiment / 'models' / 'net_g_4.pth', map_location='cpu')['params'].items():
        assert torch.equal(value, first_latest[name]), name

    output, _ = train(root, opt, 'ending', '--auto_resume', '--force_yml', 'train:total_iter=5')
    assert 'Resuming training from epoch: ' in output
    log = training_log(experiment)
    resumed = log[log.index('Resuming training'):]
    print(resumed[resumed.index('iter:       5'):])
    assert [int(i) for _, i in VALIDATION_HEADER.findall(resumed)] == [5]
    assert 'No final validation' not in resumed and '@ 6 iter' not in resumed and '@ 7 iter' not in resumed
    assert re.search(r'iter:\s+5, lr:.*\[eta: 0:00:00, time', resumed)
    latest = latest_weights(experiment)
    assert any(not torch.equal(latest[name], first_latest[name]) for name in latest)
