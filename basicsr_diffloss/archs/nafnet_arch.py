"""NAFNet: the nonlinear-activation-free U-Net of Chen et al., "Simple Baselines for Image Restoration" (ECCV 2022)."""
import torch
import torch.nn.functional as F
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn


class LayerNorm2d(nn.Module):
    """Layer normalisation over the channels of each pixel of a (B, C, H, W) tensor, with a per-channel affine."""

    def __init__(self, channels, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x):
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return x * self.weight[:, None, None] + self.bias[:, None, None]


class SimpleGate(nn.Module):
    """Splits the channels in two halves and returns their product: the gate that replaces activations."""

    def forward(self, x):
        first, second = x.chunk(2, dim=1)
        return first * second


class NAFBlock(nn.Module):
    """Two residual halves, each scaled by a learned per-channel factor that starts at zero.

    Spatial half: norm, 1x1 expand, 3x3 depthwise, SimpleGate, simplified channel attention (global average pool and
    a 1x1 conv, multiplied in, no activation), 1x1 project. Channel half: norm, 1x1 expand, SimpleGate, 1x1 project.
    """

    def __init__(self, channels, dw_expand=2, ffn_expand=2, dropout=0.0):
        super().__init__()
        hidden = channels * dw_expand
        self.norm1 = LayerNorm2d(channels)
        self.expand = nn.Conv2d(channels, hidden, 1)
        self.depthwise = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.gate = SimpleGate()
        self.attention = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(hidden // 2, hidden // 2, 1))
        self.project = nn.Conv2d(hidden // 2, channels, 1)
        ffn_hidden = channels * ffn_expand
        self.norm2 = LayerNorm2d(channels)
        self.ffn_expand = nn.Conv2d(channels, ffn_hidden, 1)
        self.ffn_project = nn.Conv2d(ffn_hidden // 2, channels, 1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x):
        y = self.gate(self.depthwise(self.expand(self.norm1(x))))
        y = self.project(y * self.attention(y))
        x = x + self.dropout(y) * self.beta
        y = self.ffn_project(self.gate(self.ffn_expand(self.norm2(x))))
        return x + self.dropout(y) * self.gamma


@ARCH_REGISTRY.register()
class NAFNet(nn.Module):
    """NAFNet (Chen et al., ECCV 2022): a U-Net of NAFBlocks with a global residual, for denoising, deblurring, ...

    The encoder halves the resolution with stride-2 2x2 convolutions (doubling the channels) after each stage; the
    decoder doubles it with a 1x1 convolution and pixel shuffle (halving the channels) and adds the skip connection.
    Inputs of any size are padded (replicate) to a multiple of 2^len(enc_blk_nums) and the output is cropped back.

    Args:
        img_channel (int): channels of the input and output image. Default: 3.
        width (int): channels of the first stage. Default: 16.
        middle_blk_num (int): NAFBlocks at the lowest resolution. Default: 1.
        enc_blk_nums (list[int]): NAFBlocks in each encoder stage, top to bottom. Default: [] (no down-sampling).
        dec_blk_nums (list[int]): NAFBlocks in each decoder stage, bottom to top; as long as ``enc_blk_nums``.
            Default: [].
        dw_expand (int): channel expansion of the spatial half of each block. Default: 2.
        ffn_expand (int): channel expansion of the channel half of each block. Default: 2.
        dropout (float): dropout rate inside the blocks. Default: 0.

    Published configurations (the NAFNet repository's option files) and their parameter counts here:
        GoPro width32: width 32, enc_blk_nums [1, 1, 1, 28], middle_blk_num 1, dec_blk_nums [1, 1, 1, 1]:
            17,111,907 parameters (published: about 17.1M).
        SIDD width32: width 32, enc_blk_nums [2, 2, 4, 8], middle_blk_num 12, dec_blk_nums [2, 2, 2, 2]:
            29,159,715 parameters (published: 29.16M, the authors' answer in NAFNet issue #60).
    tests/test_backbones.py checks both counts.
    """

    def __init__(self, img_channel=3, width=16, middle_blk_num=1, enc_blk_nums=(), dec_blk_nums=(), dw_expand=2,
                 ffn_expand=2, dropout=0.0):
        super().__init__()
        if len(enc_blk_nums) != len(dec_blk_nums):
            raise ValueError(f"NAFNet options 'enc_blk_nums' {list(enc_blk_nums)} and 'dec_blk_nums' "
                             f'{list(dec_blk_nums)} must have the same length (one decoder stage per encoder stage).')

        def stage(channels, count):
            return nn.Sequential(*(NAFBlock(channels, dw_expand, ffn_expand, dropout) for _ in range(count)))

        self.intro = nn.Conv2d(img_channel, width, 3, padding=1)
        self.encoders, self.downs = nn.ModuleList(), nn.ModuleList()
        channels = width
        for count in enc_blk_nums:
            self.encoders.append(stage(channels, count))
            self.downs.append(nn.Conv2d(channels, channels * 2, 2, stride=2))
            channels *= 2
        self.middle = stage(channels, middle_blk_num)
        self.ups, self.decoders = nn.ModuleList(), nn.ModuleList()
        for count in dec_blk_nums:
            self.ups.append(nn.Sequential(nn.Conv2d(channels, channels * 2, 1, bias=False), nn.PixelShuffle(2)))
            channels //= 2
            self.decoders.append(stage(channels, count))
        self.ending = nn.Conv2d(width, img_channel, 3, padding=1)
        self.size_factor = 2**len(enc_blk_nums)

    def forward(self, image):
        height, width = image.shape[-2:]
        pad_h, pad_w = -height % self.size_factor, -width % self.size_factor
        x = F.pad(image, (0, pad_w, 0, pad_h), mode='replicate') if pad_h or pad_w else image
        residual = x
        x = self.intro(x)
        skips = []
        for encoder, down in zip(self.encoders, self.downs):
            x = encoder(x)
            skips.append(x)
            x = down(x)
        x = self.middle(x)
        for up, decoder, skip in zip(self.ups, self.decoders, reversed(skips)):
            x = decoder(up(x) + skip)
        x = self.ending(x) + residual
        return x[..., :height, :width]
