"""DiffLossSRModel and DiffLossESRGANModel: DiffLoss joins BasicSR's training steps and logs each term."""
import pytest
import torch

from basicsr.models import build_model
from conftest import TINY_UNET


def model_options(tmp_path, model_type, diffusion=True):
    opt = {
        'name': 'unit', 'model_type': model_type, 'num_gpu': 0, 'is_train': True, 'dist': False, 'rank': 0,
        'world_size': 1, 'scale': 2,
        'network_g': {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1, 'upscale': 2},
        'path': {'models': str(tmp_path / 'models'), 'training_states': str(tmp_path / 'states')},
        'train': {
            'optim_g': {'type': 'Adam', 'lr': 1e-3},
            'scheduler': {'type': 'MultiStepLR', 'milestones': [10], 'gamma': 0.5},
            'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0},
        },
    }
    if diffusion:
        opt['train']['diffusion_opt'] = {'type': 'DiffLoss', 'prior': {'type': 'DiffusionPrior', 'unet': TINY_UNET},
                                         'eps_weight': 1.0, 'h_weight': 1.0, 'gradient': 'backprop'}
    return opt


def batch():
    torch.manual_seed(0)
    return {'lq': torch.rand(2, 3, 8, 8), 'gt': torch.rand(2, 3, 16, 16)}


def test_sr_model_logs_each_term_and_keeps_the_prior_out_of_net_g(tmp_path):
    model = build_model(model_options(tmp_path, 'DiffLossSRModel'))
    model.feed_data(batch())
    model.optimize_parameters(1)
    assert list(model.get_current_log()) == ['l_pix', 'l_diff_eps', 'l_diff_h']
    assert not any('unet' in key for key in model.net_g.state_dict())


def test_sr_model_without_diffusion_opt_is_plain_srmodel(tmp_path):
    model = build_model(model_options(tmp_path, 'DiffLossSRModel', diffusion=False))
    model.feed_data(batch())
    model.optimize_parameters(1)
    assert list(model.get_current_log()) == ['l_pix']


@pytest.mark.parametrize('net_d_init_iters, expected', [
    (0, ['l_pix', 'l_diff_eps', 'l_diff_h', 'l_g_gan', 'l_d_real', 'l_d_fake', 'out_d_real', 'out_d_fake']),
    (5, ['l_d_real', 'l_d_fake', 'out_d_real', 'out_d_fake']),
])
def test_esrgan_model_adds_diffloss_to_generator_updates(tmp_path, net_d_init_iters, expected):
    opt = model_options(tmp_path, 'DiffLossESRGANModel')
    opt['network_d'] = {'type': 'UNetDiscriminatorSN', 'num_in_ch': 3, 'num_feat': 8}
    opt['train'].update(optim_d={'type': 'Adam', 'lr': 1e-3}, net_d_init_iters=net_d_init_iters,
                        gan_opt={'type': 'GANLoss', 'gan_type': 'vanilla', 'loss_weight': 0.1})
    model = build_model(opt)
    model.feed_data(batch())
    generator_before = [p.detach().clone() for p in model.net_g.parameters()]
    model.optimize_parameters(1)
    assert sorted(model.get_current_log()) == sorted(expected)
    generator_moved = any(not torch.equal(a, b) for a, b in zip(generator_before, model.net_g.parameters()))
    assert generator_moved == (net_d_init_iters == 0)
