"""Importing the package repairs basicsr 1.4.2 and registers everything; the entry points take BasicSR's flags."""
import subprocess
import sys

import pytest

from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY, MODEL_REGISTRY
from conftest import REPO

REGISTERED = [(ARCH_REGISTRY, 'DiffusionPrior'), (ARCH_REGISTRY, 'UNet2DModel'), (LOSS_REGISTRY, 'DiffLoss'),
              (MODEL_REGISTRY, 'DiffLossSRModel'), (MODEL_REGISTRY, 'DiffLossESRGANModel'),
              (MODEL_REGISTRY, 'DiffusionPriorModel'), (DATASET_REGISTRY, 'ImageCropDataset')]


@pytest.mark.parametrize('registry, name', REGISTERED)
def test_everything_is_registered_on_import(registry, name):
    assert registry.get(name) is not None


def test_a_fresh_interpreter_imports_the_package_with_basicsr_1_4_2():
    code = ('import basicsr_diffloss, basicsr, basicsr.data.degradations; '
            'from basicsr.utils.registry import LOSS_REGISTRY; LOSS_REGISTRY.get("DiffLoss"); print(basicsr.__version__)')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == '1.4.2'


@pytest.mark.parametrize('entry', ['basicsr_diffloss.train', 'basicsr_diffloss.test'])
def test_entry_points_accept_basicsr_flags(entry):
    result = subprocess.run([sys.executable, '-m', entry, '--help'], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    for flag in ('-opt', '--launcher', '--auto_resume', '--debug', '--force_yml'):
        assert flag in result.stdout
