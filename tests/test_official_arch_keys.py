"""Published NAFNet and IAT checkpoints load strictly: our state-dict keys and shapes are the official ones.

The expected keys are generated here from the structure of the official modules (megvii-research/NAFNet,
``basicsr/models/archs/NAFNet_arch.py`` and ``local_arch.py``; cuiziteng/Illumination-Adaptive-Transformer,
``IAT_enhance/model/IAT_main.py``, ``blocks.py``, ``global_net.py``): the loops below spell out the official
attribute names and shapes, without importing that code. Checkpoints are then written with those names (NAFNet's in
BasicSR's ``{'params': ...}`` wrapping, IAT's as the plain state dicts it publishes) and read through BasicSR's own
``load_network`` with ``strict=True``. Padding, local statistics (NAFNetLocal) and IAT's output formula are checked
against references computed in the tests.
"""
import pytest
import torch
import torch.nn.functional as F
from basicsr.archs import build_network
from basicsr.models.base_model import BaseModel

import basicsr_diffloss  # noqa: F401  (registers the archs)
from basicsr_diffloss.archs import IAT
from basicsr_diffloss.archs.nafnet_arch import LocalAvgPool2d

NAFNET_GOPRO_WIDTH32 = dict(width=32, enc_blk_nums=[1, 1, 1, 28], middle_blk_num=1, dec_blk_nums=[1, 1, 1, 1])
NAFNET_SIDD_WIDTH32 = dict(width=32, enc_blk_nums=[2, 2, 4, 8], middle_blk_num=12, dec_blk_nums=[2, 2, 2, 2])
SMALL_NAFNET = dict(width=8, enc_blk_nums=[1, 1, 1, 1], middle_blk_num=1, dec_blk_nums=[1, 1, 1, 1])  # factor 16


# ---------------------------------------------------------------------------------------------------------------
# The official names and shapes
# ---------------------------------------------------------------------------------------------------------------
def official_nafblock_keys(prefix, c):
    """Official NAFBlock(c) with DW_Expand = FFN_Expand = 2: conv1..conv5, sca.1 (sca.0 is the pool), norms, scales."""
    dw, ffn = 2 * c, 2 * c
    shapes = {
        'conv1.weight': (dw, c, 1, 1), 'conv1.bias': (dw, ),
        'conv2.weight': (dw, 1, 3, 3), 'conv2.bias': (dw, ),  # depthwise
        'conv3.weight': (c, dw // 2, 1, 1), 'conv3.bias': (c, ),
        'sca.1.weight': (dw // 2, dw // 2, 1, 1), 'sca.1.bias': (dw // 2, ),
        'conv4.weight': (ffn, c, 1, 1), 'conv4.bias': (ffn, ),
        'conv5.weight': (c, ffn // 2, 1, 1), 'conv5.bias': (c, ),
        'norm1.weight': (c, ), 'norm1.bias': (c, ), 'norm2.weight': (c, ), 'norm2.bias': (c, ),
        'beta': (1, c, 1, 1), 'gamma': (1, c, 1, 1),
    }
    return {f'{prefix}.{name}': shape for name, shape in shapes.items()}


def official_nafnet_keys(width, enc_blk_nums, middle_blk_num, dec_blk_nums, img_channel=3):
    """Official NAFNet: intro, encoders.i.j, downs.i, middle_blks.j, ups.i.0 (no bias), decoders.i.j, ending."""
    keys = {'intro.weight': (width, img_channel, 3, 3), 'intro.bias': (width, ),
            'ending.weight': (img_channel, width, 3, 3), 'ending.bias': (img_channel, )}
    chan = width
    for i, num in enumerate(enc_blk_nums):
        for j in range(num):
            keys.update(official_nafblock_keys(f'encoders.{i}.{j}', chan))
        keys[f'downs.{i}.weight'], keys[f'downs.{i}.bias'] = (2 * chan, chan, 2, 2), (2 * chan, )
        chan *= 2
    for j in range(middle_blk_num):
        keys.update(official_nafblock_keys(f'middle_blks.{j}', chan))
    for i, num in enumerate(dec_blk_nums):
        keys[f'ups.{i}.0.weight'] = (2 * chan, chan, 1, 1)
        chan //= 2
        for j in range(num):
            keys.update(official_nafblock_keys(f'decoders.{i}.{j}', chan))
    return keys


def official_cblock_keys(prefix, dim=16):
    """Official CBlock_ln(16): pos_embed, norm1/norm2 (Aff_channel: alpha, beta (1, 1, dim), color), conv1, attn,
    conv2, gamma_1/gamma_2, mlp (CMlp: 1x1 convs fc1, fc2)."""
    shapes = {'gamma_1': (1, dim, 1, 1), 'gamma_2': (1, dim, 1, 1),
              'pos_embed.weight': (dim, 1, 3, 3), 'pos_embed.bias': (dim, ),
              'conv1.weight': (dim, dim, 1, 1), 'conv1.bias': (dim, ),
              'conv2.weight': (dim, dim, 1, 1), 'conv2.bias': (dim, ),
              'attn.weight': (dim, 1, 5, 5), 'attn.bias': (dim, ),
              'mlp.fc1.weight': (4 * dim, dim, 1, 1), 'mlp.fc1.bias': (4 * dim, ),
              'mlp.fc2.weight': (dim, 4 * dim, 1, 1), 'mlp.fc2.bias': (dim, )}
    for norm in ('norm1', 'norm2'):
        shapes.update({f'{norm}.alpha': (1, 1, dim), f'{norm}.beta': (1, 1, dim), f'{norm}.color': (dim, dim)})
    return {f'{prefix}.{name}': shape for name, shape in shapes.items()}


def official_iat_keys(with_global=True):
    """Official IAT(in_dim=3): local_net (Local_pred_S) and global_net (Global_pred, 64 channels, 10 queries)."""
    keys = {'local_net.conv1.weight': (16, 3, 3, 3), 'local_net.conv1.bias': (16, )}
    for stack in ('mul_blocks', 'add_blocks'):
        for j in range(3):
            keys.update(official_cblock_keys(f'local_net.{stack}.{j}'))
    for end in ('mul_end', 'add_end'):
        keys[f'local_net.{end}.0.weight'], keys[f'local_net.{end}.0.bias'] = (3, 16, 3, 3), (3, )
    if not with_global:
        return keys
    glob = {'gamma_base': (1, ), 'color_base': (3, 3),
            'conv_large.proj.0.weight': (32, 3, 3, 3), 'conv_large.proj.0.bias': (32, ),
            'conv_large.proj.3.weight': (64, 32, 3, 3), 'conv_large.proj.3.bias': (64, ),
            'generator.pos_embed.weight': (64, 1, 3, 3), 'generator.pos_embed.bias': (64, ),
            'generator.norm1.weight': (64, ), 'generator.norm1.bias': (64, ),
            'generator.attn.q': (1, 10, 64), 'generator.attn.k.weight': (64, 64), 'generator.attn.v.weight': (64, 64),
            'generator.attn.proj.weight': (64, 64), 'generator.attn.proj.bias': (64, ),
            'generator.norm2.weight': (64, ), 'generator.norm2.bias': (64, ),
            'generator.mlp.fc1.weight': (256, 64), 'generator.mlp.fc1.bias': (256, ),
            'generator.mlp.fc2.weight': (64, 256), 'generator.mlp.fc2.bias': (64, ),
            'gamma_linear.weight': (1, 64), 'gamma_linear.bias': (1, ),
            'color_linear.weight': (1, 64), 'color_linear.bias': (1, )}
    for index, channels in ((1, 32), (4, 64)):  # BatchNorm2d: parameters and buffers
        for name in ('weight', 'bias', 'running_mean', 'running_var'):
            glob[f'conv_large.proj.{index}.{name}'] = (channels, )
        glob[f'conv_large.proj.{index}.num_batches_tracked'] = ()
    keys.update({f'global_net.{name}': shape for name, shape in glob.items()})
    return keys


def shapes_of(network):
    return {name: tuple(value.shape) for name, value in network.state_dict().items()}


def official_checkpoint(keys, seed=0):
    """A state dict with the official names and shapes and random values (integer counters stay integers)."""
    generator = torch.Generator().manual_seed(seed)
    return {name: (torch.tensor(7) if name.endswith('num_batches_tracked') else
                   torch.rand(shape, generator=generator) + 0.5) for name, shape in keys.items()}


def load_like_basicsr(network, path, param_key):
    """BasicSR's BaseModel.load_network, what ``path.pretrain_network_g`` runs (``strict_load_g: true``)."""
    BaseModel.__new__(BaseModel).load_network(network, str(path), strict=True, param_key=param_key)


def randomise_residual_scales(network, seed=0):
    """NAFBlocks start as identities (beta = gamma = 0); random scales make every block count."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in network.named_parameters():
            if name.endswith(('.beta', '.gamma')):
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    return network


# ---------------------------------------------------------------------------------------------------------------
# NAFNet and NAFNetLocal
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('arch', ['NAFNet', 'NAFNetLocal'])
@pytest.mark.parametrize('config, entries', [(NAFNET_GOPRO_WIDTH32, 664), (NAFNET_SIDD_WIDTH32, None)],
                         ids=['GoPro-width32', 'SIDD-width32'])
def test_nafnet_keys_and_shapes_are_the_official_ones(arch, config, entries):
    expected = official_nafnet_keys(**config)
    if entries is not None:
        assert len(expected) == entries
    assert shapes_of(build_network(dict(type=arch, **config))) == expected


@pytest.mark.parametrize('arch', ['NAFNet', 'NAFNetLocal'])
def test_official_nafnet_checkpoint_loads_strictly(arch, tmp_path):
    checkpoint = official_checkpoint(official_nafnet_keys(**NAFNET_GOPRO_WIDTH32))
    torch.save({'params': checkpoint}, tmp_path / 'NAFNet-GoPro-width32.pth')  # how BasicSR saves (and NAFNet ships)
    network = build_network(dict(type=arch, img_channel=3, **NAFNET_GOPRO_WIDTH32))
    load_like_basicsr(network, tmp_path / 'NAFNet-GoPro-width32.pth', param_key='params')
    loaded = network.state_dict()
    assert all(torch.equal(loaded[name], value) for name, value in checkpoint.items())


def test_nafnet_pads_with_zeros_as_official():
    torch.manual_seed(0)
    network = randomise_residual_scales(build_network(dict(type='NAFNet', **SMALL_NAFNET))).eval()
    image = torch.rand(1, 3, 50, 70)
    padded = torch.zeros(1, 3, 64, 80)  # the next multiples of 2^4, zeros at the bottom and right
    padded[..., :50, :70] = image
    replicated = F.pad(image, (0, 10, 0, 14), mode='replicate')
    with torch.no_grad():
        output, reference = network(image), network(padded)[..., :50, :70]
        other = network(replicated)[..., :50, :70]
    assert output.shape == image.shape
    torch.testing.assert_close(output, reference, rtol=0, atol=0)
    assert not torch.allclose(output, other, atol=1e-4)  # the test tells the padding modes apart


class SlidingMean(torch.nn.Module):
    """Reference for the official local pool: the mean over each full kernel window (avg_pool2d, stride 1), padded
    (replicate) back to the input size; the global mean where the window covers the map."""

    def __init__(self, kernel_size):
        super().__init__()
        self.kernel_size = kernel_size

    def forward(self, x):
        height, width = x.shape[-2:]
        if self.kernel_size[0] >= height and self.kernel_size[1] >= width:
            return x.mean((-2, -1), keepdim=True)
        k_h, k_w = min(height, self.kernel_size[0]), min(width, self.kernel_size[1])
        means = F.avg_pool2d(x, (k_h, k_w), stride=1)
        pad_h, pad_w = height - means.shape[-2], width - means.shape[-1]
        return F.pad(means, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2), mode='replicate')


@pytest.mark.parametrize('size', [(9, 12), (9, 5), (4, 3)], ids=['local', 'local-in-height', 'global'])
def test_local_pool_is_the_sliding_window_mean(size):
    x = torch.rand(2, 4, *size, dtype=torch.float64)
    torch.testing.assert_close(LocalAvgPool2d((5, 7))(x).expand_as(x), SlidingMean((5, 7))(x).expand_as(x))


def test_fast_local_pool_is_the_official_approximation():
    """fast_imp: means of the windows x[i+1 : i+1+k] on the map sub-sampled by the largest of 5..1 dividing the
    size (capped by max_reduction), kernel // r, up-sampled (nearest), then padded (replicate)."""
    x = torch.rand(1, 2, 20, 18, dtype=torch.float64)
    pool = LocalAvgPool2d((10, 9), fast_imp=True, max_reduction=(5, 2))
    r_h, r_w = 5, 2  # 20 % 5 == 0; 18: 3 divides it but the cap is 2
    sub = x[..., ::r_h, ::r_w]
    means = F.avg_pool2d(sub[..., 1:, 1:], (10 // r_h, 9 // r_w), stride=1)
    means = means.repeat_interleave(r_h, -2).repeat_interleave(r_w, -1)
    pad_h, pad_w = 20 - means.shape[-2], 18 - means.shape[-1]
    reference = F.pad(means, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2), mode='replicate')
    torch.testing.assert_close(pool(x), reference)


def test_nafnet_local_windows_follow_the_official_derivation():
    """Default train_size (1, 3, 256, 256): base_size 384; the SCA at level l (map 256 / 2^l) averages 384 / 2^l."""
    network = build_network(dict(type='NAFNetLocal', **NAFNET_GOPRO_WIDTH32))
    assert network.base_size == (384, 384)
    expected = {'encoders.0.0': 384, 'encoders.1.0': 192, 'encoders.2.0': 96, 'encoders.3.27': 48,
                'middle_blks.0': 24, 'decoders.0.0': 48, 'decoders.1.0': 96, 'decoders.2.0': 192, 'decoders.3.0': 384}
    modules = dict(network.named_modules())
    for block, size in expected.items():
        assert modules[f'{block}.sca.0'].kernel_size == (size, size)
    odd = build_network(dict(type='NAFNetLocal', train_size=[1, 3, 250, 200], **SMALL_NAFNET))
    assert odd.base_size == (375, 300)  # int(1.5 H), int(1.5 W); maps of the zero-padded 256 x 208 patch
    assert dict(odd.named_modules())['encoders.1.0.sca.0'].kernel_size == (128 * 375 // 250, 104 * 300 // 200)


def test_nafnet_local_equals_nafnet_up_to_its_window_and_uses_local_means_beyond():
    torch.manual_seed(0)
    plain = randomise_residual_scales(build_network(dict(type='NAFNet', **SMALL_NAFNET))).eval()
    local = build_network(dict(type='NAFNetLocal', train_size=(1, 3, 64, 64), **SMALL_NAFNET)).eval()
    local.load_state_dict(plain.state_dict(), strict=True)
    with torch.no_grad():
        for size in ((64, 64), (96, 90), (50, 70)):  # up to base_size (96): every window covers its map
            image = torch.rand(1, 3, *size)
            torch.testing.assert_close(local(image), plain(image), rtol=0, atol=0)
        large = torch.rand(1, 3, 160, 144)
        output, global_output = local(large), plain(large)
        # The reference: NAFNet with each block's pool replaced by the sliding mean over 96 / 2^level.
        for level, block in plain.blocks_by_level():
            block.sca[0] = SlidingMean((96 // 2**level, 96 // 2**level))
        reference = plain(large)
    assert output.shape == large.shape and torch.isfinite(output).all()
    torch.testing.assert_close(output, reference, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(output, global_output, atol=1e-3)


def test_fast_nafnet_local_equals_nafnet_at_train_size():
    torch.manual_seed(0)
    plain = randomise_residual_scales(build_network(dict(type='NAFNet', **SMALL_NAFNET))).eval()
    fast = build_network(dict(type='NAFNetLocal', train_size=[1, 3, 64, 64], fast_imp=True, **SMALL_NAFNET)).eval()
    fast.load_state_dict(plain.state_dict(), strict=True)
    with torch.no_grad():
        image = torch.rand(1, 3, 64, 64)
        torch.testing.assert_close(fast(image), plain(image), rtol=0, atol=0)
        large = torch.rand(1, 3, 160, 160)
        assert fast(large).shape == large.shape


# ---------------------------------------------------------------------------------------------------------------
# IAT
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('options', [dict(), dict(iat_type='lol'), dict(iat_type='exp')], ids=['default', 'lol', 'exp'])
def test_iat_keys_and_shapes_are_the_official_ones(options):
    expected = official_iat_keys()
    assert len(expected) == 161
    network = build_network(dict(type='IAT', **options))
    assert shapes_of(network) == expected
    count = sum(p.numel() for p in network.parameters())
    assert count == 91_154 and abs(count - 91e3) / 91e3 < 0.01  # published: about 91k ("90k+")


def test_iat_without_the_global_branch_has_the_official_local_keys():
    assert shapes_of(build_network(dict(type='IAT', with_global=False))) == official_iat_keys(with_global=False)


def test_iat_exp_freezes_gamma_base_as_official():
    assert build_network(dict(type='IAT')).global_net.gamma_base.requires_grad
    assert not build_network(dict(type='IAT', iat_type='exp')).global_net.gamma_base.requires_grad
    assert IAT(type='exp').type == 'exp'  # the official keyword works in Python
    with pytest.raises(ValueError, match="'type'"):
        IAT(type='unknown')


@pytest.mark.parametrize('iat_type', ['lol', 'exp'])
def test_published_iat_checkpoint_loads_strictly(iat_type, tmp_path):
    """IAT publishes plain state dicts (torch.save(model.state_dict())): ``param_key_g: ~`` in BasicSR."""
    checkpoint = official_checkpoint(official_iat_keys())
    torch.save(checkpoint, tmp_path / f'best_Epoch_{iat_type}.pth')
    network = build_network(dict(type='IAT', iat_type=iat_type))
    load_like_basicsr(network, tmp_path / f'best_Epoch_{iat_type}.pth', param_key=None)
    loaded = network.state_dict()
    assert all(torch.equal(loaded[name], value) for name, value in checkpoint.items())


def test_iat_drop_path_rates_and_initialisation_are_official():
    torch.manual_seed(0)
    network = build_network(dict(type='IAT'))
    for stack in (network.local_net.mul_blocks, network.local_net.add_blocks):
        assert [block.drop_path.rate for block in stack] == [0.01, 0.05, 0.1]
        for block in stack:
            assert torch.all(block.gamma_1 == 1e-4) and torch.all(block.gamma_2 == 1e-4)
    # Local convolutions: N(0, 2 / fan_out), fan_out = k * k * out / groups, zero biases.
    fc2 = network.local_net.mul_blocks[0].mlp.fc2  # 1x1, 64 -> 16: std sqrt(2 / 16) (PyTorch's default: 0.072)
    assert abs(fc2.weight.std().item() / (2 / 16)**0.5 - 1) < 0.1
    conv_biases = [m.bias for m in network.local_net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(torch.all(bias == 0) for bias in conv_biases)
    # Global linear layers: truncated N(0, 0.02^2), zero biases; values start at zero; bases 1 and the identity.
    fc1 = network.global_net.generator.mlp.fc1
    assert abs(fc1.weight.std().item() / 0.02 - 1) < 0.1 and torch.all(fc1.bias == 0)
    assert torch.all(network.global_net.generator.attn.v.weight == 0)
    assert network.global_net.color_linear.weight.abs().max() > 0  # not zeroed: the values make the start neutral
    assert torch.all(network.global_net.generator.attn.q == 1)
    torch.testing.assert_close(network.global_net.color_base.data, torch.eye(3))


def test_iat_output_is_the_official_formula():
    """Per image, as the official ``apply_color``: pixels (H*W, 3) times the colour matrix transposed, clamped to
    [1e-8, 1], to the power gamma; ``x * mul + add`` before."""
    torch.manual_seed(0)
    network = build_network(dict(type='IAT')).eval()
    with torch.no_grad():
        for parameter in network.parameters():  # away from the neutral start, so every part counts
            parameter.add_(torch.randn_like(parameter) * 0.02)
        image = torch.rand(2, 3, 20, 12)
        mul, add = network.local_net(image)
        gamma, color = network.global_net(image)
        assert gamma.shape == (2, 1) and color.shape == (2, 3, 3)
        high = (image * mul + add).permute(0, 2, 3, 1)
        reference = torch.stack([
            (high[i].reshape(-1, 3) @ color[i].T).reshape(high[i].shape).clamp(1e-8, 1.0)**gamma[i] for i in range(2)
        ]).permute(0, 3, 1, 2)
        torch.testing.assert_close(network(image), reference)
