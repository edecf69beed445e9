"""DiffusionPriorModel's training step: fp32 by default, bfloat16 forward under ``train.autocast: bf16``."""
import pytest
import torch

from basicsr.models import build_model
from basicsr_diffloss.options import OptionError
from conftest import TINY_UNET


def prior_model_options(tmp_path, **train):
    return {
        'name': 'prior_unit', 'model_type': 'DiffusionPriorModel', 'num_gpu': 0, 'is_train': True, 'dist': False,
        'rank': 0, 'world_size': 1, 'network_g': dict(TINY_UNET, type='UNet2DModel'),
        'path': {'models': str(tmp_path / 'models'), 'training_states': str(tmp_path / 'states')},
        'train': {'optim_g': {'type': 'Adam', 'lr': 1e-3}, 'scheduler': {'type': 'MultiStepLR', 'milestones': [10]},
                  'pixel_opt': {'type': 'MSELoss', 'loss_weight': 1.0}, **train},
    }


def one_step(model):
    """Train one step; the dtypes the UNet's convolutions computed in, and whether every weight moved."""
    dtypes = set()
    hooks = [module.register_forward_hook(lambda _, __, output: dtypes.add(output.dtype))
             for module in model.net_g.modules() if isinstance(module, torch.nn.Conv2d)]
    before = [p.detach().clone() for p in model.net_g.parameters()]
    torch.manual_seed(0)
    model.feed_data({'gt': torch.rand(2, 3, 16, 16)})
    model.optimize_parameters(1)
    for hook in hooks:
        hook.remove()
    moved = all(not torch.equal(b, p) for b, p in zip(before, model.net_g.parameters()))
    return dtypes, moved


@pytest.mark.parametrize('autocast, computed', [(None, torch.float32), ('bf16', torch.bfloat16)])
def test_the_prior_trains_in_the_dtype_autocast_names_with_fp32_weights(tmp_path, autocast, computed):
    model = build_model(prior_model_options(tmp_path, **({'autocast': autocast} if autocast else {})))
    dtypes, moved = one_step(model)
    assert dtypes == {computed}
    assert moved and all(p.dtype == torch.float32 for p in model.net_g.parameters())
    assert torch.isfinite(torch.tensor(model.log_dict['l_eps']))


def test_an_autocast_it_cannot_run_is_refused_with_the_fix(tmp_path):
    with pytest.raises(OptionError, match=r"DiffusionPriorModel option 'train.autocast': 'fp16' is not one of "
                       r"\['bf16'\]: remove the key to train in fp32"):
        build_model(prior_model_options(tmp_path, autocast='fp16'))
