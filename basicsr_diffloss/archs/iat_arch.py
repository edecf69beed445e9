"""IAT: the Illumination Adaptive Transformer of Cui et al. (BMVC 2022) for low-light enhancement and exposure.

Module names, parameter shapes, drop-path rates and initialisation are those of the official code
(cuiziteng/Illumination-Adaptive-Transformer, ``IAT_enhance/model/IAT_main.py``, ``blocks.py``, ``global_net.py``),
so the published checkpoints (plain state dicts) load with ``strict=True`` and give the official outputs.
"""
import math

import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

LOCAL_CHANNELS = 16  # the official local branch's width, fixed
LOCAL_DROP_PATH = (0.01, 0.05, 0.1)  # the official stochastic-depth rates of the three blocks of each stack
GLOBAL_CHANNELS = 64
GLOBAL_HEADS = 4
IAT_TYPES = ('lol', 'exp')


class DropPath(nn.Module):
    """Stochastic depth: in training, zero the branch for a random subset of the batch and rescale the rest."""

    def __init__(self, rate):
        super().__init__()
        self.rate = rate

    def extra_repr(self):
        return f'rate={self.rate}'

    def forward(self, x):
        if self.rate == 0 or not self.training:
            return x
        keep = 1 - self.rate
        mask = x.new_empty((x.shape[0], ) + (1, ) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


class ChannelAffine(nn.Module):
    """IAT's normalisation of local features (official ``Aff_channel``): a learned channel-mixing matrix ``color``
    (identity at start), then a per-channel scale ``alpha`` and shift ``beta``, each of shape (1, 1, C). It keeps
    the brightness statistics a true normalisation would remove. Works on (B, C, H, W) maps."""

    def __init__(self, dim):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones([1, 1, dim]))
        self.beta = nn.Parameter(torch.zeros([1, 1, dim]))
        self.color = nn.Parameter(torch.eye(dim))

    def forward(self, x):
        x = torch.einsum('dc,bchw->bdhw', self.color, x)
        return x * self.alpha.view(1, -1, 1, 1) + self.beta.view(1, -1, 1, 1)


class Mlp(nn.Module):
    """``fc1``, GELU, ``fc2``: 1x1 convolutions over (B, C, H, W) maps (``conv=True``) or linear layers over
    (B, N, C) tokens."""

    def __init__(self, dim, hidden, conv):
        super().__init__()
        layer = (lambda i, o: nn.Conv2d(i, o, 1)) if conv else nn.Linear
        self.fc1 = layer(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = layer(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class ConvBlock(nn.Module):
    """The local branch's convolutional transformer block (official ``CBlock_ln``): a depthwise 3x3 position
    embedding, then two residual branches scaled per channel by ``gamma_1`` and ``gamma_2`` (1e-4 at start):
    1x1 ``conv1``, depthwise 5x5 ``attn``, 1x1 ``conv2``; and a 1x1 MLP with GELU (4x hidden). Each branch reads a
    ChannelAffine of its input and passes through stochastic depth at ``drop_path``."""

    def __init__(self, dim, drop_path=0., mlp_ratio=4., init_values=1e-4):
        super().__init__()
        self.pos_embed = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = ChannelAffine(dim)
        self.conv1 = nn.Conv2d(dim, dim, 1)
        self.conv2 = nn.Conv2d(dim, dim, 1)
        self.attn = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()
        self.norm2 = ChannelAffine(dim)
        self.gamma_1 = nn.Parameter(init_values * torch.ones((1, dim, 1, 1)))
        self.gamma_2 = nn.Parameter(init_values * torch.ones((1, dim, 1, 1)))
        self.mlp = Mlp(dim, int(dim * mlp_ratio), conv=True)

    def forward(self, x):
        x = x + self.pos_embed(x)
        x = x + self.drop_path(self.gamma_1 * self.conv2(self.attn(self.conv1(self.norm1(x)))))
        return x + self.drop_path(self.gamma_2 * self.mlp(self.norm2(x)))


class LocalBranch(nn.Module):
    """Pixel-wise maps ``mul`` (>= 0, ReLU) and ``add`` (in [-1, 1], tanh), each from its own stack of three
    ConvBlocks over shared features, with a skip connection around each stack (official ``Local_pred_S``).
    Convolutions start from N(0, 2 / fan_out) weights and zero biases, as in the official ``_init_weights``."""

    def __init__(self, in_dim=3, dim=LOCAL_CHANNELS):
        super().__init__()
        self.conv1 = nn.Conv2d(in_dim, dim, 3, padding=1)
        self.relu = nn.LeakyReLU(negative_slope=0.2, inplace=True)
        self.mul_blocks = nn.Sequential(*(ConvBlock(dim, drop_path=rate) for rate in LOCAL_DROP_PATH))
        self.add_blocks = nn.Sequential(*(ConvBlock(dim, drop_path=rate) for rate in LOCAL_DROP_PATH))
        self.mul_end = nn.Sequential(nn.Conv2d(dim, 3, 3, 1, 1), nn.ReLU())
        self.add_end = nn.Sequential(nn.Conv2d(dim, 3, 3, 1, 1), nn.Tanh())
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
                nn.init.normal_(module.weight, 0, math.sqrt(2.0 / fan_out))
                nn.init.zeros_(module.bias)

    def forward(self, img):
        features = self.relu(self.conv1(img))
        mul = self.mul_end(self.mul_blocks(features) + features)
        add = self.add_end(self.add_blocks(features) + features)
        return mul, add


class ConvEmbedding(nn.Module):
    """Two stride-2 3x3 convolutions with batch norm and GELU between: a 4x down-sampled embedding (``proj``)."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.proj = nn.Sequential(nn.Conv2d(in_channels, out_channels // 2, 3, stride=2, padding=1),
                                  nn.BatchNorm2d(out_channels // 2), nn.GELU(),
                                  nn.Conv2d(out_channels // 2, out_channels, 3, stride=2, padding=1),
                                  nn.BatchNorm2d(out_channels))

    def forward(self, x):
        return self.proj(x)


class QueryAttention(nn.Module):
    """Multi-head attention of ``num_queries`` learned queries ``q`` (ones at start) over the image's tokens; keys
    ``k`` and values ``v`` without bias, output projection ``proj``."""

    def __init__(self, dim, num_heads, num_queries):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'IAT global branch: {dim} channels do not split into {num_heads} heads.')
        self.num_heads = num_heads
        self.scale = (dim // num_heads)**-0.5
        self.q = nn.Parameter(torch.ones((1, num_queries, dim)))
        self.k = nn.Linear(dim, dim, bias=False)
        self.v = nn.Linear(dim, dim, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        batch, _, dim = x.shape

        def heads(t):
            return t.reshape(batch, -1, self.num_heads, dim // self.num_heads).transpose(1, 2)

        q, k, v = heads(self.q.expand(batch, -1, -1)), heads(self.k(x)), heads(self.v(x))
        weights = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((weights @ v).transpose(1, 2).reshape(batch, -1, dim))


class QueryBlock(nn.Module):
    """Depthwise 3x3 position embedding, then the queries' attention over the layer-normed tokens (the answers
    replace the tokens: no residual there), then an MLP (4x hidden) with a residual (official ``query_SABlock``)."""

    def __init__(self, dim, num_heads, num_queries, mlp_ratio=4.):
        super().__init__()
        self.pos_embed = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = QueryAttention(dim, num_heads, num_queries)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), conv=False)

    def forward(self, x):
        x = x + self.pos_embed(x)
        x = self.attn(self.norm1(x.flatten(2).transpose(1, 2)))
        return x + self.mlp(self.norm2(x))


class GlobalBranch(nn.Module):
    """Image-wide gamma and 3x3 colour matrix, read from 10 learned queries (1 for gamma, 9 for the matrix entries)
    over a 4x down-sampled embedding, added to ``gamma_base`` (1) and ``color_base`` (identity) (official
    ``Global_pred``). Linear layers start from N(0, 0.02^2) weights (truncated at +-2) and zero biases, and the
    values ``generator.attn.v`` at zero, so the branch starts at gamma 1 and the identity matrix. For
    ``type='exp'`` (exposure correction) ``gamma_base`` is frozen."""

    def __init__(self, in_channels=3, out_channels=GLOBAL_CHANNELS, num_heads=GLOBAL_HEADS, type='lol'):
        super().__init__()
        self.gamma_base = nn.Parameter(torch.ones((1)), requires_grad=type != 'exp')
        self.color_base = nn.Parameter(torch.eye((3)))
        self.conv_large = ConvEmbedding(in_channels, out_channels)
        self.generator = QueryBlock(out_channels, num_heads, num_queries=10)
        self.gamma_linear = nn.Linear(out_channels, 1)
        self.color_linear = nn.Linear(out_channels, 1)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.zeros_(self.generator.attn.v.weight)

    def forward(self, x):
        answers = self.generator(self.conv_large(x))
        gamma = self.gamma_linear(answers[:, :1]).squeeze(-1) + self.gamma_base
        color = self.color_linear(answers[:, 1:]).squeeze(-1).view(-1, 3, 3) + self.color_base
        return gamma, color


@ARCH_REGISTRY.register()
class IAT(nn.Module):
    """Illumination Adaptive Transformer (Cui et al., BMVC 2022): ``clamp((x * mul + add) @ color^T) ^ gamma``.

    A local branch (``local_net``) estimates pixel-wise ``mul`` and ``add`` maps; a global branch (``global_net``)
    predicts one 3x3 colour matrix and one gamma per image with attention queries. The colour-corrected image is
    clamped to [1e-8, 1] before the gamma, so the output lies in [0, 1]. Any input size works (the global branch
    attends over all positions). ``forward`` returns the enhanced image only (the official one returns
    ``(mul, add, image)``).

    Args:
        in_dim (int): image channels; the heads and the colour matrix are 3-channel, so it must be 3. Default: 3.
        with_global (bool): include the global branch; without it the output is ``x * mul + add``. Default: True.
        type (str): ``'lol'`` (low-light enhancement) or ``'exp'`` (exposure correction: ``gamma_base`` is frozen at
            1). Default: 'lol'.
        iat_type (str | None): the same as ``type``, for BasicSR option files, whose ``network_g.type`` names the
            registered class. Default: None (use ``type``).

    The network has 91,154 parameters (published: about 91k, "90k+") and 161 state-dict entries, the official
    ones (tests/test_official_arch_keys.py); published checkpoints are plain state dicts, so load them with
    ``param_key_g: ~``.
    """

    def __init__(self, in_dim=3, with_global=True, type='lol', iat_type=None):
        super().__init__()
        if iat_type is not None:
            if type not in ('lol', iat_type):
                raise ValueError(f"IAT options 'type' {type!r} and 'iat_type' {iat_type!r} disagree.")
            type = iat_type
        if type not in IAT_TYPES:
            raise ValueError(f"IAT option 'type' (in option files 'iat_type') must be one of {IAT_TYPES}, "
                             f'not {type!r}.')
        if in_dim != 3:
            raise ValueError(f"IAT option 'in_dim' must be 3 (its heads and colour matrix are 3-channel), not "
                             f'{in_dim}.')
        self.type = type
        self.local_net = LocalBranch(in_dim=in_dim)
        self.with_global = with_global
        if with_global:
            self.global_net = GlobalBranch(in_channels=in_dim, type=type)

    def forward(self, img_low):
        mul, add = self.local_net(img_low)
        img_high = img_low * mul + add
        if not self.with_global:
            return img_high
        gamma, color = self.global_net(img_low)
        img_high = torch.einsum('bij,bjhw->bihw', color, img_high).clamp(1e-8, 1.0)
        return img_high**gamma[:, :, None, None]
