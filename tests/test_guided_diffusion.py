"""guided-diffusion (ADM) checkpoints: the conversion is checked against an independent reference of the ADM network.

``ReferenceADM`` below is written from the ADM architecture's description (Dhariwal & Nichol 2021; guided-diffusion's
state-dict layout), not from its code. Small random networks in that layout are converted and must give the same
eps and middle-block output as the reference, to a relative error of 1e-5 in float32.
"""
import importlib.util
import json
import math
from os import path as osp

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import REPO, load_options, smooth_image
from diffusers import DDPMScheduler
from torch import nn

from basicsr_diffloss.priors import DiffusionPrior
from basicsr_diffloss.losses import DiffLoss
from basicsr_diffloss.priors import (MODELS, NotRepresentableError, convert_state_dict, resolve_flags,
                                     scheduler_config, unet_config)
from basicsr_diffloss.priors.guided_diffusion import empty_unet

TOLERANCE = 1e-5

# ---------------------------------------------------------------------------------------------------------------------
# The reference: ADM's UNet, module names as in guided-diffusion's state dicts.


def timestep_features(t, dim):
    """Sinusoidal features of t: cosines then sines of t * 10000^(-i / (dim/2)), i < dim/2."""
    half = dim // 2
    frequencies = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    angles = t.float()[:, None] * frequencies[None]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)


def resample(x, mode):
    if mode == 'up':
        return F.interpolate(x, scale_factor=2, mode='nearest')
    return F.avg_pool2d(x, kernel_size=2, stride=2) if mode == 'down' else x


class ResBlock(nn.Module):
    """Norm-SiLU-conv, timestep embedding added (or as scale and shift of the second norm), norm-SiLU-conv, skip.

    With ``mode`` 'up'/'down' the block resamples both paths after its first norm-SiLU (BigGAN style).
    """

    def __init__(self, channels, out_channels, emb_channels, scale_shift, mode=None):
        super().__init__()
        self.scale_shift, self.mode = scale_shift, mode
        self.in_layers = nn.Sequential(nn.GroupNorm(32, channels), nn.SiLU(),
                                       nn.Conv2d(channels, out_channels, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, out_channels * (2 if scale_shift else 1)))
        self.out_layers = nn.Sequential(nn.GroupNorm(32, out_channels), nn.SiLU(), nn.Dropout(0.0),
                                        nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.skip_connection = nn.Identity() if channels == out_channels else nn.Conv2d(channels, out_channels, 1)

    def forward(self, x, emb):
        h = resample(self.in_layers[1](self.in_layers[0](x)), self.mode)
        h = self.in_layers[2](h)
        e = self.emb_layers(emb)[:, :, None, None]
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            h = self.out_layers[1:](self.out_layers[0](h) * (1 + scale) + shift)
        else:
            h = self.out_layers(h + e)
        return self.skip_connection(resample(x, self.mode)) + h


class AttentionBlock(nn.Module):
    """Multi-head self-attention over pixels from one fused 1x1 qkv projection, with a residual.

    ``new_order=False`` reads the 3C qkv rows head by head (q, k, v of head 0, then head 1, ...); ``True`` reads all
    q rows, then all k, then all v, each split into heads.
    """

    def __init__(self, channels, heads, new_order):
        super().__init__()
        self.heads, self.new_order = heads, new_order
        self.norm = nn.GroupNorm(32, channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x, emb):
        batch, channels, height, width = x.shape
        head_dim = channels // self.heads
        qkv = self.qkv(self.norm(x).flatten(2))
        if self.new_order:
            q, k, v = qkv.reshape(batch, 3, self.heads, head_dim, -1).unbind(1)
        else:
            q, k, v = qkv.reshape(batch, self.heads, 3, head_dim, -1).unbind(2)
        weights = torch.softmax(torch.einsum('bhdt,bhds->bhts', q, k) / math.sqrt(head_dim), dim=-1)
        out = torch.einsum('bhts,bhds->bhdt', weights, v).reshape(batch, channels, -1)
        return x + self.proj_out(out).reshape(x.shape)


class ConvDown(nn.Module):

    def __init__(self, channels):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x, emb):
        return self.op(x)


class ConvUp(nn.Module):

    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x, emb):
        return self.conv(resample(x, 'up'))


class ReferenceADM(nn.Module):
    """ADM's UNet from guided-diffusion flags; ``forward(x, t, y)`` returns (output, middle-block output)."""

    def __init__(self, image_size, num_channels, num_res_blocks, channel_mult, attention_resolutions, num_heads=4,
                 num_head_channels=-1, learn_sigma=False, class_cond=False, resblock_updown=False,
                 use_scale_shift_norm=False, use_new_attention_order=False, **ignored):
        super().__init__()
        mults = [float(m) for m in channel_mult.split(',')]
        rates = {image_size // int(r) for r in attention_resolutions.split(',')}
        emb_channels = 4 * num_channels
        self.num_channels = num_channels

        def res(cin, cout, mode=None):
            return ResBlock(cin, cout, emb_channels, use_scale_shift_norm, mode)

        def attention(ch):
            return AttentionBlock(ch, ch // num_head_channels if num_head_channels > 0 else num_heads,
                                  use_new_attention_order)

        self.time_embed = nn.Sequential(nn.Linear(num_channels, emb_channels), nn.SiLU(),
                                        nn.Linear(emb_channels, emb_channels))
        if class_cond:
            self.label_emb = nn.Embedding(1000, emb_channels)
        ch = int(mults[0] * num_channels)
        self.input_blocks = nn.ModuleList([nn.ModuleList([nn.Conv2d(3, ch, 3, padding=1)])])
        skips, rate = [ch], 1
        for level, mult in enumerate(mults):
            for _ in range(num_res_blocks):
                layers = [res(ch, int(mult * num_channels))]
                ch = int(mult * num_channels)
                if rate in rates:
                    layers.append(attention(ch))
                self.input_blocks.append(nn.ModuleList(layers))
                skips.append(ch)
            if level < len(mults) - 1:
                self.input_blocks.append(nn.ModuleList([res(ch, ch, 'down') if resblock_updown else ConvDown(ch)]))
                skips.append(ch)
                rate *= 2
        self.middle_block = nn.ModuleList([res(ch, ch), attention(ch), res(ch, ch)])
        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(mults))):
            for j in range(num_res_blocks + 1):
                layers = [res(ch + skips.pop(), int(mult * num_channels))]
                ch = int(mult * num_channels)
                if rate in rates:
                    layers.append(attention(ch))
                if level and j == num_res_blocks:
                    layers.append(res(ch, ch, 'up') if resblock_updown else ConvUp(ch))
                    rate //= 2
                self.output_blocks.append(nn.ModuleList(layers))
        self.out = nn.Sequential(nn.GroupNorm(32, ch), nn.SiLU(), nn.Conv2d(ch, 6 if learn_sigma else 3, 3, padding=1))

    def forward(self, x, t, y=None):
        emb = self.time_embed(timestep_features(t, self.num_channels))
        if y is not None:
            emb = emb + self.label_emb(y)
        h = self.input_blocks[0][0](x)
        skips = [h]
        for block in self.input_blocks[1:]:
            for layer in block:
                h = layer(h, emb)
            skips.append(h)
        for layer in self.middle_block:
            h = layer(h, emb)
        middle = h
        for block in self.output_blocks:
            h = torch.cat([h, skips.pop()], dim=1)
            for layer in block:
                h = layer(h, emb)
        return self.out(h), middle


def random_reference(flags, seed=0):
    """A reference network with random weights everywhere (norms too: ADM's zero initialisations would hide bugs)."""
    torch.manual_seed(seed)
    reference = ReferenceADM(**flags).eval()
    for module in reference.modules():
        if isinstance(module, nn.GroupNorm):
            nn.init.normal_(module.weight, 1.0, 0.2)
            nn.init.normal_(module.bias, 0.0, 0.2)
    return reference


# ---------------------------------------------------------------------------------------------------------------------
# Tiny configurations covering every switch.

TINY = dict(image_size=16, num_channels=32, num_res_blocks=2, channel_mult='1,2,2', attention_resolutions='8,4',
            num_head_channels=16)
CONFIGS = {
    'legacy_updown_scaleshift_sigma': dict(TINY, learn_sigma=True, resblock_updown=True, use_scale_shift_norm=True),
    'neworder_updown_scaleshift_sigma_classcond': dict(TINY, num_res_blocks=1, learn_sigma=True, class_cond=True,
                                                       resblock_updown=True, use_scale_shift_norm=True,
                                                       use_new_attention_order=True),
    'legacy_convresample_plainnorm_topattention': dict(TINY, attention_resolutions='16,4', num_head_channels=8,
                                                       resblock_updown=False, use_scale_shift_norm=False),
    'neworder_convresample_scaleshift_numheads': dict(TINY, num_head_channels=-1, num_heads=2, resblock_updown=False,
                                                      use_scale_shift_norm=True, use_new_attention_order=True),
    'legacy_updown_plainnorm_classcond_numheads': dict(TINY, channel_mult='1,1', attention_resolutions='16,8',
                                                       num_head_channels=-1, num_heads=4, class_cond=True,
                                                       resblock_updown=True, use_scale_shift_norm=False),
}


def relative_error(a, b):
    return ((a - b).norm() / b.norm()).item()


def inputs(flags, batch=3, seed=1):
    generator = torch.Generator().manual_seed(seed)
    x_t = torch.randn(batch, 3, flags['image_size'], flags['image_size'], generator=generator)
    t = torch.tensor([0, 420, 999][:batch])
    y = torch.randint(0, 1000, (batch, ), generator=generator) if flags.get('class_cond') else None
    return x_t, t, y


def save_checkpoint(reference, path):
    torch.save(reference.state_dict(), path)
    return str(path)


def load_script(name):
    spec = importlib.util.spec_from_file_location(name, osp.join(REPO, 'scripts', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def errors_against_reference(prior, reference, flags):
    x_t, t, y = inputs(flags)
    with torch.no_grad():
        expected, expected_h = reference(x_t, t, y)
        eps, h = prior(x_t, t, class_labels=y)
    return relative_error(eps, expected[:, :3]), relative_error(h, expected_h)


# ---------------------------------------------------------------------------------------------------------------------
# Equivalence


@pytest.mark.parametrize('name', list(CONFIGS))
def test_converted_prior_matches_the_reference(name, tmp_path):
    flags = CONFIGS[name]
    reference = random_reference(flags)
    prior = DiffusionPrior(pretrained=save_checkpoint(reference, tmp_path / 'model.pt'), guided_diffusion=flags)
    eps_error, h_error = errors_against_reference(prior, reference, flags)
    print(f'\n{name}: eps relative error {eps_error:.2e}, middle-block relative error {h_error:.2e}')
    assert prior.learned_sigma == bool(flags.get('learn_sigma'))
    assert eps_error <= TOLERANCE and h_error <= TOLERANCE


@pytest.mark.parametrize('name', ['legacy_updown_scaleshift_sigma', 'neworder_convresample_scaleshift_numheads'])
def test_the_wrong_attention_order_is_detected(name, tmp_path):
    """The comparison can tell the two qkv layouts apart: converting with the other order gives another network."""
    flags = CONFIGS[name]
    reference = random_reference(flags)
    wrong = dict(flags, use_new_attention_order=not flags.get('use_new_attention_order', False))
    prior = DiffusionPrior(pretrained=save_checkpoint(reference, tmp_path / 'model.pt'), guided_diffusion=wrong)
    eps_error, h_error = errors_against_reference(prior, reference, flags)
    print(f'\n{name} converted with the other qkv order: eps {eps_error:.2e}, middle block {h_error:.2e}')
    assert h_error > 1e-3


# ---------------------------------------------------------------------------------------------------------------------
# Strictness


def test_leftover_missing_and_misshaped_keys_are_errors():
    flags = CONFIGS['legacy_updown_scaleshift_sigma']
    state = random_reference(flags).state_dict()
    resolved = resolve_flags(**flags)
    with pytest.raises(ValueError, match=r'left unconverted: input_blocks\.99\.0\.in_layers\.0\.weight'):
        convert_state_dict(dict(state, **{'input_blocks.99.0.in_layers.0.weight': torch.zeros(3)}), resolved)
    with pytest.raises(ValueError, match=r'not filled: .*mid_block\.attentions\.0\.to_q\.weight'):
        convert_state_dict({k: v for k, v in state.items() if not k.startswith('middle_block.1.qkv')}, resolved)
    with pytest.raises(ValueError, match=r'left unconverted: input_blocks\.4\.1\.norm\.bias.*\(116 in all\)'):
        convert_state_dict(state, resolve_flags(**dict(flags, num_res_blocks=1)))
    with pytest.raises(ValueError, match='shapes that differ'):
        convert_state_dict(state, resolve_flags(**dict(flags, learn_sigma=False)))


def test_flags_and_models_are_checked(tmp_path):
    with pytest.raises(ValueError, match="option 'model': '256x256_unknown' is not one of"):
        resolve_flags('256x256_unknown')
    with pytest.raises(ValueError, match="option 'preset' is now called 'model'.*write model: lsun_cat"):
        resolve_flags(preset='lsun_cat')
    with pytest.raises(ValueError, match=r"\['num_chanels'\] are unknown"):
        resolve_flags(num_chanels=64)
    with pytest.raises(ValueError, match="'learn_sigma'"):
        resolve_flags(learn_sigma='maybe')
    with pytest.raises(ValueError, match="'noise_schedule'"):
        resolve_flags(noise_schedule='sqrt')
    flags = resolve_flags('256x256_diffusion_uncond', num_res_blocks='3', attention_resolutions=[16, 8])
    assert (flags['num_res_blocks'], flags['attention_resolutions']) == (3, (16, 8))
    assert flags['channel_mult'] == (1, 1, 2, 2, 4, 4)
    with pytest.raises(ValueError, match="'guided_diffusion'.*'num_heads'"):
        DiffusionPrior(pretrained=save_checkpoint(random_reference(TINY), tmp_path / 'model.pt'),
                       guided_diffusion=dict(TINY, num_head_channels=-1, num_heads=3))


def test_a_pt_file_without_the_option_is_refused(tmp_path):
    path = save_checkpoint(random_reference(TINY), tmp_path / 'model.pt')
    with pytest.raises(ValueError, match="'pretrained'.*is a file.*add the option 'guided_diffusion'"):
        DiffusionPrior(pretrained=path)
    with pytest.raises(ValueError, match="'guided_diffusion' describes the .pt checkpoint"):
        DiffusionPrior(unet={}, guided_diffusion={'model': '256x256_diffusion_uncond'})


def test_class_conditional_prior_without_labels_is_refused(tmp_path):
    flags = CONFIGS['neworder_updown_scaleshift_sigma_classcond']
    prior = DiffusionPrior(pretrained=save_checkpoint(random_reference(flags), tmp_path / 'm.pt'),
                           guided_diffusion=flags)
    with pytest.raises(ValueError, match='class-conditional'):
        prior(torch.randn(1, 3, 16, 16), torch.tensor([5]))
    with pytest.raises(ValueError, match="DiffLoss option 'prior': the prior is class-conditional"):
        DiffLoss(prior=prior)  # refused at start-up, not at the first step


# ---------------------------------------------------------------------------------------------------------------------
# The conversion script, and direct loading


def test_script_writes_a_folder_that_loads_strictly_and_equals_direct_loading(tmp_path, capsys):
    flags = CONFIGS['legacy_updown_scaleshift_sigma']
    reference = random_reference(flags)
    checkpoint = save_checkpoint(reference, tmp_path / 'model.pt')
    folder = tmp_path / 'converted'
    # the published model's flags, overridden to the tiny network's (its learn_sigma, resblock_updown, ... stay)
    load_script('convert_guided_diffusion').main([
        '--checkpoint', checkpoint, '--output', str(folder), '--model', '256x256_diffusion_uncond', '--image_size',
        '16', '--num_channels', '32', '--channel_mult', '1,2,2', '--attention_resolutions', '8,4',
        '--num_head_channels', '16'
    ])
    assert 'loads strictly' in capsys.readouterr().out
    written = {p.name for p in folder.iterdir()}
    assert written >= {'config.json', 'diffusion_pytorch_model.safetensors', 'scheduler_config.json',
                       'guided_diffusion.json'}
    scheduler = json.loads((folder / 'scheduler_config.json').read_text())
    assert scheduler['prediction_type'] == 'epsilon'
    assert (scheduler['beta_schedule'], scheduler['num_train_timesteps']) == ('linear', 1000)
    from_folder = DiffusionPrior(pretrained=str(folder))
    direct = DiffusionPrior(pretrained=checkpoint, guided_diffusion=dict(flags, model='256x256_diffusion_uncond'))
    for name, value in direct.state_dict().items():
        assert torch.equal(value, from_folder.state_dict()[name]), name
    torch.testing.assert_close(from_folder.alphas_cumprod, direct.alphas_cumprod, rtol=0, atol=0)
    x_t, t, _ = inputs(flags)
    for a, b in zip(from_folder(x_t, t), direct(x_t, t)):
        assert torch.equal(a, b)
    assert max(errors_against_reference(from_folder, reference, flags)) <= TOLERANCE


def test_schedules_follow_the_flags():
    linear = DDPMScheduler(**scheduler_config(resolve_flags('256x256_diffusion_uncond')))
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    torch.testing.assert_close(linear.alphas_cumprod.double(), torch.cumprod(1 - betas, 0), rtol=1e-5, atol=1e-7)
    cosine = DDPMScheduler(**scheduler_config(resolve_flags('64x64_diffusion')))
    steps = torch.arange(1001, dtype=torch.float64) / 1000
    abar = torch.cos((steps + 0.008) / 1.008 * math.pi / 2)**2
    betas = (1 - abar[1:] / abar[:-1]).clamp(max=0.999)
    torch.testing.assert_close(cosine.alphas_cumprod.double(), torch.cumprod(1 - betas, 0), rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------------------------------------------------------------
# Presets: full-size networks, on the meta device (no memory, no initialisation)

PARAMETERS = {'256x256_diffusion_uncond': 552_814_086, '256x256_diffusion': 553_838_086}
NOT_REPRESENTABLE = {'128x128_diffusion': 'heads of different widths', '512x512_diffusion': "'channel_mult'"}


@pytest.mark.parametrize('model', sorted(MODELS))
def test_every_model_builds_a_unet_that_its_checkpoint_layout_fills(model):
    flags = resolve_flags(model)
    if model in NOT_REPRESENTABLE:
        with pytest.raises(NotRepresentableError, match=NOT_REPRESENTABLE[model]):
            unet_config(flags)
        return
    unet = empty_unet(unet_config(flags))
    with torch.device('meta'):
        reference = ReferenceADM(**{name: ','.join(str(v) for v in value) if isinstance(value, tuple) else value
                                    for name, value in flags.items()})
    converted = convert_state_dict(reference.state_dict(), flags)  # every key converted, filled, shaped right
    count = sum(p.numel() for p in unet.parameters())
    assert count == sum(p.numel() for p in reference.parameters()) == sum(v.numel() for v in converted.values())
    assert count == PARAMETERS.get(model, count)


# ---------------------------------------------------------------------------------------------------------------------
# The inspection script, and the paper option file


def test_inspect_prior_prints_a_table_and_writes_the_grid(tmp_path, capsys):
    flags = CONFIGS['legacy_updown_scaleshift_sigma']
    folder = tmp_path / 'prior'
    DiffusionPrior(pretrained=save_checkpoint(random_reference(flags), tmp_path / 'm.pt'),
                   guided_diffusion=flags).unet.save_pretrained(folder)
    images = tmp_path / 'images'
    images.mkdir()
    rng = np.random.default_rng(0)
    for index, (height, width) in enumerate([(40, 56), (24, 24), (64, 32)]):
        cv2.imwrite(str(images / f'img{index}.png'), smooth_image(rng, height, width))
    output = tmp_path / 'grid' / 'x0.png'
    rows = load_script('inspect_prior').main([
        '--prior', str(folder), '--images', str(images), '--size', '16', '--timesteps', '50,500,900', '--crop',
        'random', '--output', str(output)
    ])
    printed = capsys.readouterr().out
    assert 'eps MSE' in printed and all(f'\n{t:>5} ' in printed for t in (50, 500, 900))
    assert [row[0] for row in rows] == [50, 500, 900] and all(np.isfinite(row[2]) for row in rows)
    grid = cv2.imread(str(output))
    assert grid.shape == (4 * 16 + 5 * 2, 3 * 16 + 4 * 2, 3)  # rows: crops + 3 t; columns: 3 images; 2 px padding


def test_paper_option_file_uses_the_paper_preset_and_a_representable_prior():
    opt = load_options('options/train/paper/train_EDSR_x4_paper_diffloss.yml')
    diffusion = opt['train']['diffusion_opt']
    assert (opt['model_type'], diffusion['type'], diffusion['preset']) == ('SRModel', 'DiffLoss', 'paper')
    assert opt['train']['pixel_opt']['type'] == 'MSELoss'
    prior = diffusion['prior']
    assert prior['pretrained'].endswith('256x256_diffusion_uncond.pt')
    config = unet_config(resolve_flags(**prior['guided_diffusion']))
    assert diffusion['crop_size'] % 2**(len(config['block_out_channels']) - 1) == 0
