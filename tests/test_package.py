"""Importing the package repairs basicsr 1.4.2 and registers everything; the entry points take BasicSR's flags; the
installed commands exist and run."""
import importlib
import importlib.util
import json
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


# Run by one fresh interpreter outside the repository: the plain import, then each entry point's and installed
# command's ``--help`` in turn, in-process (as ``python -m`` and pip's command wrappers run them: the module as
# __main__, or the declared function with the command's name as argv[0]). Prints {key: [exit code, stdout, stderr]}.
FRESH_INTERPRETER = r"""
import contextlib, io, json, runpy, sys
from importlib import metadata
results = {}
def run(key, argv, call):
    out, err, code = io.StringIO(), io.StringIO(), 0
    sys.argv = argv
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            call()
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    results[key] = [code, out.getvalue(), err.getvalue()]
def fresh_import():
    import basicsr_diffloss, basicsr, basicsr.data.degradations
    from basicsr.utils.registry import LOSS_REGISTRY
    LOSS_REGISTRY.get('DiffLoss')
    print(basicsr.__version__)
run('import', ['-c'], fresh_import)
for entry in ENTRIES:
    run(entry, [entry, '--help'], lambda: runpy.run_module(entry, run_name='__main__', alter_sys=True))
declared = {e.name: e for e in metadata.distribution('basicsr-diffloss').entry_points if e.group == 'console_scripts'}
for name in COMMANDS:
    if name in declared:
        run(name, [name, '--help'], lambda: sys.exit(declared[name].load()()))
sys.stdout.write(json.dumps(results))
"""
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
# The installed command run as its own program (pip's wrapper script), besides the in-process runs above.
WRAPPED_COMMAND = 'basicsr-diffloss-train'


def test_the_distribution_declares_every_command():
    declared = {entry.name: entry for entry in metadata.distribution('basicsr-diffloss').entry_points
                if entry.group == 'console_scripts'}
    assert set(declared) == set(COMMANDS), 'setup.py changed? reinstall: pip install --no-build-isolation -e .'
    for entry in declared.values():
        assert entry.value.startswith('basicsr_diffloss.commands.') and callable(entry.load())


@pytest.fixture(scope='module')
def interpreters(tmp_path_factory):
    """Two fresh interpreters started together in a folder outside the repository (each spends seconds importing
    the package): ``FRESH_INTERPRETER``, and the installed ``WRAPPED_COMMAND --help`` from the interpreter's scripts
    folder. Maps each key (``import``, an entry point, a command) to ``(returncode, stdout, stderr)``."""
    outside, folder = tmp_path_factory.mktemp('outside'), sysconfig.get_path('scripts')
    code = f'ENTRIES = {ENTRIES!r}\nCOMMANDS = {sorted(COMMANDS)!r}\n{FRESH_INTERPRETER}'
    fresh = subprocess.Popen([sys.executable, '-c', code], cwd=outside, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    wrapped = subprocess.Popen([osp.join(folder, WRAPPED_COMMAND), '--help'], cwd=outside, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True) if osp.isfile(osp.join(folder, WRAPPED_COMMAND)) \
        else None
    out, err = fresh.communicate(timeout=300)
    assert fresh.returncode == 0, err
    results = {key: tuple(value) for key, value in json.loads(out).items()}
    if wrapped is not None:
        out, err = wrapped.communicate(timeout=300)
        results[f'{WRAPPED_COMMAND} (wrapper)'] = (wrapped.returncode, out, err)
    return results


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
    for name in [*COMMANDS, f'{WRAPPED_COMMAND} (wrapper)']:
        returncode, out, err = interpreters[name]
        assert returncode == 0, f'{name} --help: {err}'
        command = name.split()[0]
        assert out.startswith(f'usage: {command} ')
        for flag in COMMANDS[command]:
            assert flag in out, f'{name} --help does not name {flag}'


@pytest.mark.parametrize('script, command', [('compare', 'compare'), ('inspect_prior', 'inspect_prior'),
                                             ('convert_guided_diffusion', 'convert_adm')])
def test_documented_scripts_run_the_installed_commands(script, command):
    spec = importlib.util.spec_from_file_location(script, osp.join(REPO, 'scripts', f'{script}.py'))
    wrapper = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(wrapper)
    assert wrapper.main is importlib.import_module(f'basicsr_diffloss.commands.{command}').main
