"""IAT: the Illumination Adaptive Transformer of Cui et al. (BMVC 2022) for low-light enhancement and exposure."""
import torch
import torch.nn.functional as F
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn


def drop_path(x, rate, training):
    """Stochastic depth: zero a whole residual branch for a random subset of the batch, rescaling the rest."""
    if rate == 0 or not training:
        return x
    keep = 1 - rate
    mask = x.new_empty((x.shape[0], ) + (1, ) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask / keep


class ChannelAffine(nn.Module):
    """IAT's normalisation of local features: a learned channel-mixing matrix (identity at start), then a per-channel
    scale and shift. It keeps the brightness statistics a true normalisation would remove."""

    def __init__(self, channels):
        super().__init__()
        self.mix = nn.Parameter(torch.eye(channels))
        self.scale = nn.Parameter(torch.ones(channels))
        self.shift = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        x = torch.einsum('dc,bchw->bdhw', self.mix, x)
        return x * self.scale[:, None, None] + self.shift[:, None, None]


class LocalBlock(nn.Module):
    """A convolutional transformer block: depthwise 3x3 position embedding, then two residual branches scaled by
    learned per-channel factors (1e-4 at start): 1x1, depthwise 5x5, 1x1 (attention-like spatial mixing), and a 1x1
    MLP with GELU; each branch reads a ChannelAffine of its input."""

    def __init__(self, channels, mlp_ratio=4, drop_rate=0.0, layer_scale=1e-4):
        super().__init__()
        self.position = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
        self.norm1 = ChannelAffine(channels)
        self.mixer = nn.Sequential(
            nn.Conv2d(channels, channels, 1), nn.Conv2d(channels, channels, 5, padding=2, groups=channels),
            nn.Conv2d(channels, channels, 1))
        self.norm2 = ChannelAffine(channels)
        hidden = int(channels * mlp_ratio)
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.GELU(), nn.Conv2d(hidden, channels, 1))
        self.scale1 = nn.Parameter(torch.full((1, channels, 1, 1), layer_scale))
        self.scale2 = nn.Parameter(torch.full((1, channels, 1, 1), layer_scale))
        self.drop_rate = drop_rate

    def forward(self, x):
        x = x + self.position(x)
        x = x + drop_path(self.scale1 * self.mixer(self.norm1(x)), self.drop_rate, self.training)
        return x + drop_path(self.scale2 * self.mlp(self.norm2(x)), self.drop_rate, self.training)


class LocalBranch(nn.Module):
    """Pixel-wise maps: ``mul`` (>= 0, ReLU) and ``add`` (in [-1, 1], tanh), each from its own stack of LocalBlocks
    over shared features, with a skip connection around each stack."""

    def __init__(self, in_channels, channels, num_blocks, drop_path_rate):
        super().__init__()
        self.embed = nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1), nn.LeakyReLU(0.2))
        rates = torch.linspace(drop_path_rate / num_blocks, drop_path_rate, num_blocks).tolist() if num_blocks else []
        self.mul_blocks = nn.Sequential(*(LocalBlock(channels, drop_rate=rate) for rate in rates))
        self.add_blocks = nn.Sequential(*(LocalBlock(channels, drop_rate=rate) for rate in rates))
        self.mul_head = nn.Sequential(nn.Conv2d(channels, in_channels, 3, padding=1), nn.ReLU())
        self.add_head = nn.Sequential(nn.Conv2d(channels, in_channels, 3, padding=1), nn.Tanh())

    def forward(self, x):
        features = self.embed(x)
        return self.mul_head(self.mul_blocks(features) + features), self.add_head(self.add_blocks(features) + features)


class QueryBlock(nn.Module):
    """Learned queries attend to the image's tokens (multi-head), then an MLP with a residual refines the answers."""

    def __init__(self, channels, num_heads, num_queries, mlp_ratio=4):
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"IAT option 'global_channels' {channels} must be a multiple of 'num_heads' {num_heads}.")
        self.num_heads = num_heads
        self.position = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
        self.norm1 = nn.LayerNorm(channels)
        self.queries = nn.Parameter(torch.ones(1, num_queries, channels))
        self.key = nn.Linear(channels, channels, bias=False)
        self.value = nn.Linear(channels, channels, bias=False)
        self.out = nn.Linear(channels, channels)
        self.norm2 = nn.LayerNorm(channels)
        hidden = int(channels * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.GELU(), nn.Linear(hidden, channels))

    def forward(self, x):
        x = x + self.position(x)
        tokens = self.norm1(x.flatten(2).transpose(1, 2))
        batch, _, channels = tokens.shape

        def split_heads(t):
            return t.reshape(batch, -1, self.num_heads, channels // self.num_heads).transpose(1, 2)

        queries, keys, values = (split_heads(t) for t in (self.queries.expand(batch, -1, -1), self.key(tokens),
                                                           self.value(tokens)))
        answers = F.scaled_dot_product_attention(queries, keys, values)
        answers = self.out(answers.transpose(1, 2).reshape(batch, -1, channels))
        return answers + self.mlp(self.norm2(answers))


class GlobalBranch(nn.Module):
    """Image-wide gamma and 3x3 colour matrix, read from 10 learned queries (1 for gamma, 9 for the matrix entries)
    over a 4x down-sampled convolutional embedding. Both heads start at zero: gamma 1 and the identity matrix."""

    def __init__(self, in_channels, channels, num_heads):
        super().__init__()
        self.embed = nn.Sequential(
            nn.Conv2d(in_channels, channels // 2, 3, stride=2, padding=1), nn.BatchNorm2d(channels // 2), nn.GELU(),
            nn.Conv2d(channels // 2, channels, 3, stride=2, padding=1), nn.BatchNorm2d(channels))
        self.queries = QueryBlock(channels, num_heads, num_queries=1 + in_channels**2)
        self.gamma_head = nn.Linear(channels, 1)
        self.colour_head = nn.Linear(channels, 1)
        for head in (self.gamma_head, self.colour_head):
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
        self.gamma_base = nn.Parameter(torch.ones(1))
        self.colour_base = nn.Parameter(torch.eye(in_channels))

    def forward(self, x):
        answers = self.queries(self.embed(x))
        gamma = self.gamma_head(answers[:, 0]) + self.gamma_base
        colour = self.colour_head(answers[:, 1:]).reshape(x.shape[0], *self.colour_base.shape) + self.colour_base
        return gamma, colour


@ARCH_REGISTRY.register()
class IAT(nn.Module):
    """Illumination Adaptive Transformer (Cui et al., BMVC 2022): ``((x * mul + add) @ colour_matrix) ^ gamma``.

    A local branch estimates pixel-wise ``mul`` and ``add`` maps; a global branch predicts one 3x3 colour matrix and
    one gamma per image with attention queries. The colour-corrected image is clamped to [1e-8, 1] before the gamma,
    so the output lies in [0, 1]. Any input size works (the global branch pools over all positions).

    Args:
        in_channels (int): image channels (the colour matrix is in_channels x in_channels). Default: 3.
        local_channels (int): feature channels of the local branch. Default: 16.
        local_blocks (int): LocalBlocks in each of the ``mul`` and ``add`` stacks. Default: 3.
        drop_path (float): stochastic-depth rate of the last LocalBlock of each stack, rising linearly from
            drop_path / local_blocks in the first. Default: 0.1.
        global_channels (int): feature channels of the global branch. Default: 64.
        num_heads (int): attention heads of the global branch's queries. Default: 4.

    With the defaults (the published LOL configuration) the network has 91,154 parameters (published: about 91k,
    "90k+"); tests/test_backbones.py checks the count.
    """

    def __init__(self, in_channels=3, local_channels=16, local_blocks=3, drop_path=0.1, global_channels=64,
                 num_heads=4):
        super().__init__()
        self.local_branch = LocalBranch(in_channels, local_channels, local_blocks, drop_path)
        self.global_branch = GlobalBranch(in_channels, global_channels, num_heads)

    def forward(self, x):
        mul, add = self.local_branch(x)
        gamma, colour = self.global_branch(x)
        y = torch.einsum('bij,bjhw->bihw', colour, x * mul + add)
        return y.clamp(1e-8, 1)**gamma[:, :, None, None]
