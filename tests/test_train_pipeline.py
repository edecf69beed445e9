"""The option files really train and test through BasicSR's pipelines; checkpoints hold the restorer alone."""
import glob
import re
from os import path as osp

import pytest
import torch

from basicsr.archs import build_network
from basicsr_diffloss.priors import DiffusionPrior
from conftest import TINY_UNET, load_options, run_module, tiny_demo_run, write_options
from test_conflict_guard import basicsr_log  # noqa: F401  (a fixture: the messages of BasicSR's logger)
from test_user_errors import start

TINY_EDSR = dict(num_feat=8, num_block=1)


def shrink_restorer_options(opt):
    opt['network_g'].update(TINY_EDSR)
    return opt


@pytest.fixture(scope='module')
def trained_demo(tmp_path_factory):
    """The demo's L1 + DiffLoss option file, trained 2 iterations on tiny demo-layout data with a tiny prior."""
    root = tmp_path_factory.mktemp('demo_run')
    opt = tiny_demo_run(root)
    opt['train']['total_iter'] = 2
    opt['val']['val_freq'] = 2
    opt['logger'].update(print_freq=1, save_checkpoint_freq=2)
    option_file = write_options(opt, root / 'train.yml')
    output = run_module('basicsr_diffloss.train', '-opt', option_file, cwd=root)
    return root, opt, option_file, output


def test_option_file_trains_and_logs_each_term(trained_demo):
    root, opt, _, _ = trained_demo
    log = open(glob.glob(str(root / 'experiments' / opt['name'] / 'train_*.log'))[0]).read()
    for name in ('l_pix:', 'l_diff_eps:', '# psnr:', '# ssim:', '# niqe:'):
        assert name in log
    assert 'l_diff_h:' not in log  # the default preset weights the eps term only
    assert 'DiffLoss strength: weights l_diff_eps' in log  # the default's weight, measured in training


def test_checkpoint_holds_the_restorer_alone_and_loads_strictly(trained_demo):
    root, opt, _, _ = trained_demo
    models = root / 'experiments' / opt['name'] / 'models'
    restorer = build_network(dict(opt['network_g']))
    for checkpoint in ('net_g_2.pth', 'net_g_latest.pth'):
        params = torch.load(models / checkpoint, map_location='cpu')['params']
        assert set(params) == set(restorer.state_dict())
        restorer.load_state_dict(params, strict=True)
    state = torch.load(root / 'experiments' / opt['name'] / 'training_states' / '2.state', weights_only=False)
    optimizer_params = state['optimizers'][0]['param_groups'][0]['params']
    assert len(optimizer_params) == len(list(restorer.parameters()))


def test_test_pipeline_runs_on_the_checkpoint(trained_demo):
    root, train_opt, _, _ = trained_demo
    opt = shrink_restorer_options(load_options('options/test/demo/test_EDSR_x4_demo.yml'))
    opt['path']['pretrain_network_g'] = str(root / 'experiments' / train_opt['name'] / 'models' / 'net_g_latest.pth')
    output = run_module('basicsr_diffloss.test', '-opt', write_options(opt, root / 'test.yml'), cwd=root)
    assert '# psnr:' in output and '# niqe:' in output
    assert osp.isfile(root / 'results' / opt['name'] / 'visualization' / 'demo_val' / f'img0_{opt["name"]}.png')


def test_auto_resume_continues_on_a_cpu_machine(trained_demo):
    root, opt, option_file, _ = trained_demo
    output = run_module('basicsr_diffloss.train', '-opt', option_file, '--auto_resume', '--force_yml',
                        'train:total_iter=4', 'logger:save_checkpoint_freq=4', cwd=root)
    assert re.search(r'Resuming training from epoch: \d+, iter: 2\.', output)
    assert osp.isfile(root / 'experiments' / opt['name'] / 'training_states' / '4.state')


def test_prior_option_file_trains_and_exports_a_loadable_prior(tmp_path, tiny_demo_data):
    opt = load_options('options/train/demo/train_prior_demo.yml')
    opt['network_g'] = dict(TINY_UNET, type='UNet2DModel')
    opt['datasets']['train'].update(gt_size=16, batch_size_per_gpu=2)
    opt['datasets']['val'].update(gt_size=32)
    opt['train']['total_iter'] = 2
    opt['logger'].update(print_freq=1, save_checkpoint_freq=2)
    output = run_module('basicsr_diffloss.train', '-opt', write_options(opt, tmp_path / 'prior.yml'), cwd=tmp_path)
    assert 'l_eps_t50' in output
    models = tmp_path / 'experiments' / opt['name'] / 'models'
    ema = torch.load(models / 'net_g_latest.pth', map_location='cpu')['params_ema']
    for folder in ('prior_2', 'prior_latest'):
        prior = DiffusionPrior(pretrained=str(models / folder))
        assert prior.num_train_timesteps == opt['noise_schedule']['num_train_timesteps']
    for name, value in prior.unet.state_dict().items():
        assert torch.equal(value, ema[name]), name


def test_training_reaches_total_iter_when_the_loader_drops_an_incomplete_batch(tmp_path, basicsr_log):
    """3 images in batches of 2: BasicSR counts 2 batches an epoch, the loader (drop_last) yields 1, and BasicSR's
    epoch count used to end the run at iteration 7 of 12. A resume continues with the corrected count."""
    opt = tiny_demo_run(tmp_path, val_size=64)
    del opt['train']['diffusion_opt'], opt['val']
    opt['datasets']['train']['dataset_enlarge_ratio'] = 1
    opt['train']['total_iter'] = 12
    opt['logger'].update(print_freq=1, save_checkpoint_freq=4)
    start(tmp_path, opt, name='drop_last')
    states = tmp_path / 'experiments' / 'drop_last' / 'training_states'
    assert torch.load(states / '12.state', weights_only=False)['iter'] == 12
    corrected, = [message for message in basicsr_log if message.startswith('Training statistics corrected')]
    print('\n' + corrected)
    assert corrected.endswith('iter number per epoch: 1, not 2; total epochs: 12, not 6; iters: 12.')
    start(tmp_path, opt, '--auto_resume', '--force_yml', 'train:total_iter=16', name='drop_last')
    assert 'Resume: epoch 11 continues after its first 1 batches.' in basicsr_log
    assert torch.load(states / '16.state', weights_only=False)['iter'] == 16
