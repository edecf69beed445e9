"""Importing the package repairs basicsr 1.4.2 and registers everything; the entry points take BasicSR's flags; the
installed commands exist and run."""
import importlib
import importlib.util
import subprocess
import sys
import sysconfig
from importlib import metadata
from os import path as osp

import pytest

from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY, MODEL_REGISTRY
from conftest import REPO

REGISTERED = [(ARCH_REGISTRY, 'DiffusionPrior'), (ARCH_REGISTRY, 'UNet2DModel'), (LOSS_REGISTRY, 'DiffLoss'),
              (MODEL_REGISTRY, 'DiffLossSRModel'), (MODEL_REGISTRY, 'DiffLossESRGANModel'),
              (MODEL_REGISTRY, 'DiffusionPriorModel'), (DATASET_REGISTRY, 'ImageCropDataset')]


@pytest.mark.parametrize('registry, name', REGISTERED)
def test_everything_is_registered_on_import(registry, name):
    assert registry.get(name) is not None


FRESH_IMPORT = ('import basicsr_diffloss, basicsr, basicsr.data.degradations; from basicsr.utils.registry import '
                'LOSS_REGISTRY; LOSS_REGISTRY.get("DiffLoss"); print(basicsr.__version__)')
ENTRIES = ['basicsr_diffloss.train', 'basicsr_diffloss.test']


# console script -> what its --help must name
COMMANDS = {
    'basicsr-diffloss-train': ('-opt', '--launcher', '--auto_resume', '--debug', '--force_yml'),
    'basicsr-diffloss-test': ('-opt', '--launcher', '--force_yml'),
    'basicsr-diffloss-compare': ('-opt', '--baseline_opt', '--baseline_exp', '--diffloss_exp', '--iters',
                                 '--force_yml'),
    'basicsr-diffloss-inspect-prior': ('--prior', '--guided_diffusion_model', '--images', '--timesteps'),
    'basicsr-diffloss-convert-adm': ('--checkpoint', '--model', '--output', '--num_channels'),
}


def test_the_distribution_declares_every_command():
    declared = {entry.name: entry for entry in metadata.distribution('basicsr-diffloss').entry_points
                if entry.group == 'console_scripts'}
    assert set(declared) == set(COMMANDS), 'setup.py changed? reinstall: pip install --no-build-isolation -e .'
    for entry in declared.values():
        assert entry.value.startswith('basicsr_diffloss.commands.') and callable(entry.load())


@pytest.fixture(scope='module')
def interpreters(tmp_path_factory):
    """The fresh interpreters the tests below check, started together (each spends seconds importing the package on
    one core): a plain import, the two entry points' and the installed commands' ``--help`` (each command as pip
    installed it, in the interpreter's scripts folder, run from a folder outside the repository). Maps each to
    ``(returncode, stdout, stderr)``."""
    outside, folder = tmp_path_factory.mktemp('outside'), sysconfig.get_path('scripts')
    commands = {'import': ([sys.executable, '-c', FRESH_IMPORT], REPO)}
    commands.update({entry: ([sys.executable, '-m', entry, '--help'], REPO) for entry in ENTRIES})
    commands.update({name: ([osp.join(folder, name), '--help'], outside) for name in COMMANDS
                     if osp.isfile(osp.join(folder, name))})
    processes = {key: subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for key, (command, cwd) in commands.items()}
    outputs = {key: process.communicate(timeout=300) for key, process in processes.items()}
    return {key: (process.returncode, *outputs[key]) for key, process in processes.items()}


def test_a_fresh_interpreter_imports_the_package_with_basicsr_1_4_2(interpreters):
    returncode, out, err = interpreters['import']
    assert returncode == 0, err
    assert out.strip() == '1.4.2'


@pytest.mark.parametrize('entry', ENTRIES)
def test_entry_points_accept_basicsr_flags(interpreters, entry):
    returncode, out, err = interpreters[entry]
    assert returncode == 0, err
    for flag in ('-opt', '--launcher', '--auto_resume', '--debug', '--force_yml'):
        assert flag in out


def test_installed_commands_exist_and_run_help(interpreters):
    folder = sysconfig.get_path('scripts')
    missing = [name for name in COMMANDS if not osp.isfile(osp.join(folder, name))]
    assert not missing, f'{missing} not in {folder}: reinstall with pip install --no-build-isolation -e .'
    for name in COMMANDS:
        returncode, out, err = interpreters[name]
        assert returncode == 0, f'{name} --help: {err}'
        assert out.startswith(f'usage: {name} ')
        for flag in COMMANDS[name]:
            assert flag in out, f'{name} --help does not name {flag}'


@pytest.mark.parametrize('script, command', [('compare', 'compare'), ('inspect_prior', 'inspect_prior'),
                                             ('convert_guided_diffusion', 'convert_adm')])
def test_documented_scripts_run_the_installed_commands(script, command):
    spec = importlib.util.spec_from_file_location(script, osp.join(REPO, 'scripts', f'{script}.py'))
    wrapper = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(wrapper)
    assert wrapper.main is importlib.import_module(f'basicsr_diffloss.commands.{command}').main
