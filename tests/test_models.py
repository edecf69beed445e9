"""DiffLoss joins any BasicSR model through train.diffusion_opt: SRModel, SwinIRModel, ESRGANModel, Real-ESRGAN's
RealESRNetModel and RealESRGANModel (basicsr's own and the realesrgan package's), and the registered names
DiffLossSRModel and DiffLossESRGANModel; models that cannot take the term fail at start-up."""
import importlib.util
from collections import OrderedDict
from urllib.error import URLError

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from basicsr.archs import vgg_arch
from basicsr.models import build_model
from basicsr.models.sr_model import SRModel
from basicsr.utils.registry import MODEL_REGISTRY
from basicsr_diffloss.models import DiffusionConstraintMixin, ReliableTrainingMixin
from basicsr_diffloss.models.validation import ValidationMixin
from conftest import TINY_UNET
from test_conflict_guard import basicsr_log  # noqa: F401  (a fixture: the messages of BasicSR's logger)

# The realesrgan package's names (scripts/install.sh installs it, the `realesrgan` extra); basicsr's *_basicsr copies
# need nothing more.
HAS_REALESRGAN = importlib.util.find_spec('realesrgan') is not None
PACKAGE_NAMES = {'RealESRNetModel', 'RealESRGANModel'}


def needs_package(model_type):
    if model_type in PACKAGE_NAMES and not HAS_REALESRGAN:
        pytest.skip('the realesrgan package is not installed (scripts/install.sh installs it)')

GAN_LOG = ['l_g_pix', 'l_diff_eps', 'l_diff_h', 'l_g_gan', 'l_d_real', 'l_d_fake', 'out_d_real', 'out_d_fake']
GUARD_LOG = ['conflict_diff', 'cos_diff', 'kept_diff']
# model_type -> (network_g changes, the log after one step with diffusion_opt, besides GUARD_LOG)
MODEL_TYPES = {
    'SRModel': ({}, ['l_pix', 'l_diff_eps', 'l_diff_h']),
    'DiffLossSRModel': ({}, ['l_pix', 'l_diff_eps', 'l_diff_h']),
    'SwinIRModel': (dict(type='SwinIR', upscale=2, in_chans=3, img_size=8, window_size=4, embed_dim=12, depths=[1],
                         num_heads=[2], mlp_ratio=2, upsampler='pixelshuffle'), ['l_pix', 'l_diff_eps', 'l_diff_h']),
    'ESRGANModel': ({}, GAN_LOG),
    'DiffLossESRGANModel': ({}, GAN_LOG),
    'RealESRNetModel': ({}, ['l_pix', 'l_diff_eps', 'l_diff_h']),
    'RealESRNetModel_basicsr': ({}, ['l_pix', 'l_diff_eps', 'l_diff_h']),
    'RealESRGANModel': ({}, GAN_LOG),
    'RealESRGANModel_basicsr': ({}, GAN_LOG),
}
REAL_GAN_LOG = ['l_g_pix', 'l_diff_eps', 'l_diff_h', 'l_g_gan', 'l_d_real', 'out_d_real', 'l_d_fake', 'out_d_fake']
MODEL_TYPES['RealESRGANModel'] = MODEL_TYPES['RealESRGANModel_basicsr'] = ({}, REAL_GAN_LOG)
GAN_TYPES = {'ESRGANModel', 'DiffLossESRGANModel', 'RealESRGANModel', 'RealESRGANModel_basicsr'}


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


def options_for(tmp_path, model_type, diffusion=True):
    """Options of ``model_type`` at tiny size; GAN models get a discriminator, Real-ESRGAN's models their keys (the
    paired mode, ``high_order_degradation: false``: the synthesis itself runs in tests/test_option_files.py)."""
    network, _ = MODEL_TYPES[model_type]
    opt = model_options(tmp_path, model_type, diffusion)
    if network:
        opt['network_g'] = dict(network)
    if model_type in GAN_TYPES:
        opt['network_d'] = {'type': 'UNetDiscriminatorSN', 'num_in_ch': 3, 'num_feat': 8}
        opt['train'].update(optim_d={'type': 'Adam', 'lr': 1e-3}, net_d_init_iters=0,
                            gan_opt={'type': 'GANLoss', 'gan_type': 'vanilla', 'loss_weight': 0.1})
    if model_type.startswith('RealESR'):
        opt.update(high_order_degradation=False, gt_usm=True, l1_gt_usm=True, percep_gt_usm=True, gan_gt_usm=False,
                   queue_size=4)
    return opt


def batch():
    torch.manual_seed(0)
    return {'lq': torch.rand(2, 3, 16, 16), 'gt': torch.rand(2, 3, 32, 32)}  # USMSharp pads by 25 px


@pytest.mark.parametrize('model_type', list(MODEL_TYPES))
def test_diffusion_opt_alone_gives_any_model_the_term(tmp_path, model_type):
    """The model built is the registered one plus the mixins; it logs each term under the model's own pixel key."""
    needs_package(model_type)
    registered = MODEL_REGISTRY.get(model_type)
    model = build_model(options_for(tmp_path, model_type))
    assert isinstance(model, registered) and isinstance(model, DiffusionConstraintMixin)
    assert isinstance(model, ReliableTrainingMixin) and isinstance(model, ValidationMixin)
    assert model.cri_diff is not None and model.device.type == 'cpu'
    if model_type.startswith('RealESR'):  # compat's repair of their .cuda() calls
        assert next(model.usm_sharpener.buffers()).device.type == 'cpu'
    model.feed_data(batch())
    before = [p.detach().clone() for p in model.net_g.parameters()]
    model.optimize_parameters(1)
    log = list(model.get_current_log())
    assert [name for name in log if name not in GUARD_LOG] == MODEL_TYPES[model_type][1]
    assert set(GUARD_LOG) <= set(log)  # the conflict guard's values of the step
    assert any(not torch.equal(a, b) for a, b in zip(before, model.net_g.parameters()))
    assert not any('unet' in key for key in model.net_g.state_dict())
    (tmp_path / 'states').mkdir()
    model.save_training_state(0, 1)
    state = torch.load(tmp_path / 'states' / '1.state', weights_only=False)
    assert state['rng_states'][0]['diffloss'] is not None  # exact resume covers DiffLoss's generator


@pytest.mark.parametrize('model_type', ['SRModel', 'SwinIRModel', 'ESRGANModel', 'RealESRGANModel'])
def test_without_diffusion_opt_the_registered_model_is_built_unchanged(tmp_path, model_type):
    needs_package(model_type)
    model = build_model(options_for(tmp_path, model_type, diffusion=False))
    assert type(model) is MODEL_REGISTRY.get(model_type)


@pytest.mark.parametrize('model_type, plain', [('DiffLossSRModel', 'SRModel'), ('DiffLossESRGANModel', 'ESRGANModel')])
def test_a_diffloss_model_type_without_diffusion_opt_is_refused_in_training(tmp_path, model_type, plain):
    opt = model_options(tmp_path, model_type, diffusion=False)
    with pytest.raises(TypeError, match=f'model_type {model_type} without train.diffusion_opt trains {plain} alone, '
                       f'with no diffusion term: add a train.diffusion_opt block .*, or write model_type: {plain} '):
        build_model(opt)
    opt['is_train'] = False  # testing a trained DiffLoss model needs no diffusion_opt
    assert type(build_model(opt)).__name__ == model_type


def test_sr_model_logs_each_term_and_keeps_the_prior_out_of_net_g(tmp_path):
    opt = model_options(tmp_path, 'SRModel')
    opt['train']['perceptual_opt'] = None  # SRModel's own keys keep their meaning
    model = build_model(opt)
    assert type(model).__name__ == 'DiffLossSRModel'
    model.feed_data(batch())
    model.optimize_parameters(1)
    assert list(model.get_current_log()) == ['l_pix', 'l_diff_eps', 'l_diff_h'] + GUARD_LOG


@pytest.mark.parametrize('net_d_init_iters, expected', [
    (0, GAN_LOG),
    (5, ['l_d_real', 'l_d_fake', 'out_d_real', 'out_d_fake']),
])
def test_esrgan_model_adds_diffloss_to_generator_updates(tmp_path, net_d_init_iters, expected):
    opt = options_for(tmp_path, 'ESRGANModel')
    opt['train']['net_d_init_iters'] = net_d_init_iters
    model = build_model(opt)
    model.feed_data(batch())
    generator_before = [p.detach().clone() for p in model.net_g.parameters()]
    model.optimize_parameters(1)
    assert list(model.get_current_log()) == expected + (GUARD_LOG if net_d_init_iters == 0 else [])
    generator_moved = any(not torch.equal(a, b) for a, b in zip(generator_before, model.net_g.parameters()))
    assert generator_moved == (net_d_init_iters == 0)


def test_nonfinite_steps_are_skipped_in_any_model(tmp_path):
    opt = options_for(tmp_path, 'RealESRGANModel_basicsr')
    opt['train']['diffusion_opt']['nonfinite'] = 'skip'
    model = build_model(opt)
    data = batch()
    data['gt'][0, 0, 0, 0] = float('nan')
    model.feed_data(data)
    model.optimize_parameters(3)
    assert model.skipped_steps == 1 and model.get_current_log() == OrderedDict(skipped_steps=1.0)


class Images(Dataset):
    """Validation pairs of one size, named like files."""

    def __init__(self, lq_size, scale=2):
        torch.manual_seed(1)
        self.opt = {'name': 'odd'}
        self.lq = torch.rand(3, lq_size, lq_size)
        self.gt = torch.rand(3, lq_size * scale, lq_size * scale)

    def __len__(self):
        return 1

    def __getitem__(self, index):
        return {'lq': self.lq, 'gt': self.gt, 'lq_path': f'img{index}.png'}


def test_swinir_model_keeps_its_test_time_padding(tmp_path):
    """An LR side (69 px) that is not a multiple of the window: SwinIRModel's test() pads, and still does."""
    opt = options_for(tmp_path, 'SwinIRModel')
    opt['val'] = {'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 2, 'test_y_channel': True},
                              'niqe': {'type': 'calculate_niqe_or_nan', 'crop_border': 2}}}
    opt['path']['visualization'] = str(tmp_path / 'visualization')
    model = build_model(opt)
    assert type(model).__name__ == 'DiffLossSwinIRModel'
    model.validation(DataLoader(Images(69)), current_iter=1, tb_logger=None, save_img=False)
    assert model.metric_results['psnr'] > 0
    assert model.metric_counts['niqe'] == (0, 1)  # NaN (image under 192 px): left out, not averaged in


def test_real_esrgan_validation_feeds_images_as_they_are(tmp_path):
    """Validation images go through feed_data with is_train off, as Real-ESRGAN's own validation does."""
    opt = options_for(tmp_path, 'RealESRGANModel_basicsr')
    opt['high_order_degradation'] = True  # training batches would be synthesised (and need kernels)
    opt['val'] = {'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 2}}}
    model = build_model(opt)
    model.validation(DataLoader(Images(16)), current_iter=1, tb_logger=None, save_img=False)
    assert model.is_train and model.metric_results['psnr'] > 0


class ElsewhereModel(SRModel):
    """Judges its output with its own loss, never with cri_pix."""

    def optimize_parameters(self, current_iter):
        self.optimizer_g.zero_grad()
        loss = (self.net_g(self.lq) - self.gt).abs().mean()
        loss.backward()
        self.optimizer_g.step()
        self.log_dict = self.reduce_loss_dict(OrderedDict(l_own=loss))


class NoPixelSlotModel(SRModel):
    """Calls self.cri_pix but never builds one (a model of another family that happens to share the name)."""

    def init_training_settings(self):
        super().init_training_settings()
        del self.cri_pix


for _model in (ElsewhereModel, NoPixelSlotModel):
    if _model.__name__ not in MODEL_REGISTRY:
        MODEL_REGISTRY.register(_model)


@pytest.mark.parametrize('model_type, message', [
    ('ElsewhereModel', r"model_type ElsewhereModel \(.*\) judges the restorer's output without self.cri_pix"),
    ('NoPixelSlotModel', r'NoPixelSlotModel has no cri_pix slot after init_training_settings'),
    ('DiffusionPriorModel', r'DiffusionPriorModel trains a diffusion prior'),
])
def test_a_model_that_cannot_take_the_term_fails_at_start_up(tmp_path, model_type, message):
    with pytest.raises(TypeError, match=message) as caught:
        build_model(model_options(tmp_path, model_type))
    print(f'\n{model_type}: {caught.value}')


def test_missing_vgg_weights_offline_name_the_file(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise URLError('[Errno -3] Temporary failure in name resolution')

    monkeypatch.setattr(vgg_arch, 'VGG_PRETRAIN_PATH', str(tmp_path / 'missing' / 'vgg19-dcbb9e9d.pth'))
    monkeypatch.setattr(vgg_arch.vgg, 'vgg19', offline)
    opt = options_for(tmp_path, 'ESRGANModel', diffusion=False)
    opt['train']['perceptual_opt'] = {'type': 'PerceptualLoss', 'layer_weights': {'conv5_4': 1.0}, 'vgg_type': 'vgg19'}
    with pytest.raises(RuntimeError, match=r"VGG weights are not at '.*missing/vgg19-dcbb9e9d.pth'") as caught:
        build_model(opt)
    print(f'\n{caught.value}')


def test_a_resume_on_another_number_of_processes_carries_diffloss_state_over_and_says_what_restarts(
        tmp_path, basicsr_log):
    """DiffLoss's strength sums, guard momenta and back-off state are the same on every rank: a state saved by two
    processes resumes them in one; only the random states restart, which one warning line says."""
    opt = model_options(tmp_path, 'SRModel')
    opt['train']['diffusion_opt'] = {'type': 'DiffLoss', 'prior': {'type': 'DiffusionPrior', 'unet': TINY_UNET},
                                     'start_iter': 0, 'strength_iters': 5}
    model = build_model(opt)
    model.feed_data(batch())
    for iteration in (1, 2):
        model.optimize_parameters(iteration)
    (tmp_path / 'states').mkdir()
    model.save_training_state(0, 2)
    state = torch.load(tmp_path / 'states' / '2.state', weights_only=False)
    state['rng_states'] = state['rng_states'] * 2  # as two processes save it
    resumed = build_model(opt)
    resumed.resume_training(state)
    warning = next(message for message in basicsr_log if message.startswith('Resume: the state was saved by 2'))
    assert 'the random states' in warning and 'strength weights, guard momenta and back-off state' in warning
    mine, theirs = resumed.cri_diff, model.cri_diff
    assert theirs.guard.pixel_momentum is not None
    assert torch.equal(mine.guard.pixel_momentum, theirs.guard.pixel_momentum)
    assert torch.equal(mine.guard.term_momentum, theirs.guard.term_momentum)
    assert mine.strength.state_dict() == theirs.strength.state_dict()
    assert mine.backoff.state_dict() == theirs.backoff.state_dict() and theirs.backoff.smoothed is not None
