"""DiffusionPrior: frozen, strict loading, schedules, prediction types, h-space."""
import json

import pytest
import torch
from diffusers import DDPMScheduler, UNet2DModel
from safetensors.torch import load_file, save_file

from basicsr.archs import build_network
from basicsr_diffloss.options import OptionError
from basicsr_diffloss.priors import DiffusionPrior
from basicsr_diffloss.priors.compiled_graphs import donated_buffers_off
from conftest import TINY_UNET

WEIGHTS = 'diffusion_pytorch_model.safetensors'


def test_prior_is_frozen_and_stays_in_eval_mode(tiny_prior):
    assert all(not p.requires_grad for p in tiny_prior.parameters())
    tiny_prior.train()
    torch.nn.Sequential(tiny_prior).train()
    assert not tiny_prior.training and not tiny_prior.unet.training


def test_forward_returns_eps_and_mid_block_features(tiny_prior):
    x_t = torch.randn(2, 3, 16, 24)
    eps, h = tiny_prior(x_t, torch.tensor([10, 900]))
    assert eps.shape == x_t.shape
    assert h.shape == (2, 16, 8, 12)  # last block width, size / factor
    assert tiny_prior.size_factor == 2


def test_default_schedule_is_ddpm_linear_1000(tiny_prior):
    reference = DDPMScheduler(num_train_timesteps=1000, beta_schedule='linear', beta_start=1e-4, beta_end=0.02)
    assert tiny_prior.num_train_timesteps == 1000
    torch.testing.assert_close(tiny_prior.alphas_cumprod, reference.alphas_cumprod.float())


def test_built_from_the_registry(tiny_unet_config):
    prior = build_network({'type': 'DiffusionPrior', 'unet': tiny_unet_config, 'num_train_timesteps': 100})
    assert isinstance(prior, DiffusionPrior) and prior.alphas_cumprod.shape == (100, )


def test_saved_folder_loads_strictly_with_identical_outputs(tiny_prior, tmp_path):
    tiny_prior.unet.save_pretrained(tmp_path)
    loaded = DiffusionPrior(pretrained=str(tmp_path))
    for name, value in tiny_prior.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[name]), name
    x_t, t = torch.randn(1, 3, 16, 16), torch.tensor([500])
    for a, b in zip(tiny_prior(x_t, t), loaded(x_t, t)):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize('damage', ['unexpected', 'missing', 'shape'])
def test_loading_rejects_weights_that_do_not_match_the_config(tiny_prior_folder, damage):
    state = load_file(tiny_prior_folder / WEIGHTS)
    if damage == 'unexpected':
        state['extra.weight'] = torch.zeros(1)
    elif damage == 'missing':
        state.pop('conv_in.bias')
    else:
        state['conv_in.bias'] = torch.zeros(5)
    save_file(state, tiny_prior_folder / WEIGHTS)
    with pytest.raises(ValueError, match="option 'pretrained'"):
        DiffusionPrior(pretrained=str(tiny_prior_folder))


def test_missing_folder_and_missing_config_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="'pretrained'.*is not a folder"):
        DiffusionPrior(pretrained=str(tmp_path / 'nowhere'))
    with pytest.raises(FileNotFoundError, match='has no config.json'):
        DiffusionPrior(pretrained=str(tmp_path))


def test_pipeline_folder_uses_its_own_scheduler(tiny_prior, tmp_path):
    tiny_prior.unet.save_pretrained(tmp_path / 'unet')
    scheduler = DDPMScheduler(num_train_timesteps=500, beta_schedule='squaredcos_cap_v2')
    scheduler.save_pretrained(tmp_path / 'scheduler')
    prior = DiffusionPrior(pretrained=str(tmp_path))
    assert prior.num_train_timesteps == 500
    torch.testing.assert_close(prior.alphas_cumprod, scheduler.alphas_cumprod.float())


def test_explicit_options_override_the_saved_scheduler(tiny_prior, tmp_path):
    tiny_prior.unet.save_pretrained(tmp_path)
    DDPMScheduler(num_train_timesteps=500, prediction_type='v_prediction').save_pretrained(tmp_path)
    prior = DiffusionPrior(pretrained=str(tmp_path), num_train_timesteps=1000, prediction_type='eps')
    assert (prior.num_train_timesteps, prior.prediction_type) == (1000, 'epsilon')
    assert json.loads((tmp_path / 'scheduler_config.json').read_text())['num_train_timesteps'] == 500


@pytest.mark.parametrize('prediction_type', ['eps', 'v', 'sample'])
def test_every_prediction_type_is_converted_to_eps(tiny_unet_config, prediction_type):
    prior = DiffusionPrior(unet=tiny_unet_config, prediction_type=prediction_type)
    x0, noise = torch.rand(4, 3, 8, 8) * 2 - 1, torch.randn(4, 3, 8, 8)
    t = torch.tensor([0, 100, 500, 999])
    x_t = prior.add_noise(x0, noise, t)
    abar = prior.abar(t)
    exact = {'epsilon': noise, 'v_prediction': abar.sqrt() * noise - (1 - abar).sqrt() * x0, 'sample': x0}
    torch.testing.assert_close(prior.to_eps(exact[prior.prediction_type], x_t, t), noise, rtol=1e-4, atol=1e-4)


def test_unknown_prediction_type_is_refused(tiny_unet_config):
    with pytest.raises(ValueError, match="'prediction_type'"):
        DiffusionPrior(unet=tiny_unet_config, prediction_type='score')


def test_learned_sigma_prior_uses_the_first_three_channels(tiny_unet_config):
    torch.manual_seed(0)
    prior = DiffusionPrior(unet=dict(tiny_unet_config, out_channels=6))
    x_t, t = torch.randn(1, 3, 16, 16), torch.tensor([300])
    eps, _ = prior(x_t, t)
    torch.testing.assert_close(eps, prior.unet(x_t, t).sample[:, :3])


def test_prior_takes_one_source(tiny_unet_config, tmp_path):
    with pytest.raises(ValueError, match='not both'):
        DiffusionPrior(pretrained=str(tmp_path), unet=tiny_unet_config)


def test_registered_unet_builds_from_options(tiny_unet_config):
    assert isinstance(build_network(dict(tiny_unet_config, type='UNet2DModel')), UNet2DModel)


def test_a_unet_without_middle_block_is_refused_naming_the_option(tiny_unet_config, tmp_path):
    """DiffLoss's h term and encoder-only passes read the middle block (diffusers allows ``mid_block_type: None``)."""
    without = dict(tiny_unet_config, mid_block_type=None)
    torch.manual_seed(0)
    UNet2DModel(**without).save_pretrained(tmp_path / 'no_mid_block')
    with pytest.raises(OptionError, match=r"option 'pretrained': the UNet of '.*no_mid_block' has no middle block "
                                          r'\(mid_block_type None in its config.json\).*UNetMidBlock2D'):
        DiffusionPrior(pretrained=str(tmp_path / 'no_mid_block'))
    with pytest.raises(OptionError, match=r"option 'unet': mid_block_type None .* remove mid_block_type"):
        DiffusionPrior(unet=without)


def test_compile_leaves_the_process_wide_donated_buffer_flag_alone(tiny_prior, monkeypatch):
    """``compile: true`` compiles the UNet's graphs without donated buffers (so DiffLoss can differentiate them
    twice) by running its calls in a context, instead of turning torch's flag off for the process. Checked without
    compiling: the stand-in for ``torch.compile`` records the flag each compiled call runs under."""
    seen = []

    def recording_compile(module):
        def compiled_call(*args, **kwargs):
            seen.append(torch._functorch.config.donated_buffer)
            return module._call_impl(*args, **kwargs)

        module._compiled_call_impl = compiled_call

    monkeypatch.setattr(torch.nn.Module, 'compile', recording_compile)
    before = torch._functorch.config.donated_buffer
    prior = DiffusionPrior(unet=dict(TINY_UNET), compile=True)
    prior.load_state_dict(tiny_prior.state_dict())
    x_t = torch.randn(2, 3, 16, 16, requires_grad=True)
    t = torch.tensor([10, 900])
    eps, h = prior(x_t, t)
    (eps.square().mean() + h.square().mean()).backward()
    assert seen == [False] and torch._functorch.config.donated_buffer == before
    torch.testing.assert_close(eps, tiny_prior(x_t, t)[0])
    with donated_buffers_off():
        assert not torch._functorch.config.donated_buffer
    assert torch._functorch.config.donated_buffer == before
