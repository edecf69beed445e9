"""NAFNet: the nonlinear-activation-free U-Net of Chen et al., "Simple Baselines for Image Restoration" (ECCV 2022).

Module names, parameter shapes, padding and initialisation are those of the official code
(megvii-research/NAFNet, ``basicsr/models/archs/NAFNet_arch.py`` and ``local_arch.py``), so the published
checkpoints (BasicSR files, ``{'params': state_dict}``) load with ``strict=True`` and give the official outputs.
"""
import torch
import torch.nn.functional as F
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn


class LayerNorm2d(nn.Module):
    """Layer normalisation over the channels of each pixel of a (B, C, H, W) tensor, with a per-channel affine.

    Parameters ``weight`` (ones) and ``bias`` (zeros), of shape (C, ), as in the official code (which writes the
    backward pass by hand; autograd computes the same gradient here).
    """

    def __init__(self, channels, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x):
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / (var + self.eps).sqrt()
        return self.weight.view(1, -1, 1, 1) * x + self.bias.view(1, -1, 1, 1)


class SimpleGate(nn.Module):
    """Splits the channels in two halves and returns their product: the gate that replaces activations."""

    def forward(self, x):
        first, second = x.chunk(2, dim=1)
        return first * second


class LocalAvgPool2d(nn.Module):
    """The mean over a ``kernel_size`` window around each position, in place of the global mean: the test-time local
    statistics converter (TLSC, Chu et al., "Revisiting Global Statistics Aggregation for Improving Image
    Restoration", ECCV 2022) that NAFNetLocal puts into each block's channel attention.

    Where the window covers the whole map it is the global mean. Otherwise the means of the windows that lie inside
    the map are computed from an integral image and padded (replicate) back to the map's size, as in the official
    ``AvgPool2d``. With ``fast_imp`` the integral image is taken on a map sub-sampled by up to ``max_reduction`` (the
    largest of 5, 4, 3, 2, 1 that divides the size) and the means are up-sampled (nearest): faster, and not
    equivalent (the official approximation, reproduced as it is).

    Args:
        kernel_size (tuple[int, int]): window height and width.
        fast_imp (bool): use the sub-sampled approximation. Default: False.
        max_reduction (tuple[int, int]): the largest sub-sampling factors of ``fast_imp``. Default: (5, 5).
    """

    REDUCTIONS = (5, 4, 3, 2, 1)

    def __init__(self, kernel_size, fast_imp=False, max_reduction=(5, 5)):
        super().__init__()
        self.kernel_size = tuple(kernel_size)
        self.fast_imp = fast_imp
        self.max_reduction = tuple(max_reduction)

    def extra_repr(self):
        return f'kernel_size={self.kernel_size}, fast_imp={self.fast_imp}'

    def forward(self, x):
        height, width = x.shape[-2:]
        if self.kernel_size[0] >= height and self.kernel_size[1] >= width:
            return F.adaptive_avg_pool2d(x, 1)
        means = self._fast_means(x) if self.fast_imp else self._exact_means(x)
        pad_h, pad_w = height - means.shape[-2], width - means.shape[-1]
        return F.pad(means, (pad_w // 2, (pad_w + 1) // 2, pad_h // 2, (pad_h + 1) // 2), mode='replicate')

    def _exact_means(self, x):
        k_h, k_w = min(x.shape[-2], self.kernel_size[0]), min(x.shape[-1], self.kernel_size[1])
        integral = F.pad(x.cumsum(-1).cumsum(-2), (1, 0, 1, 0))  # integral[i, j]: the sum of x[:i, :j]
        sums = (integral[..., k_h:, k_w:] + integral[..., :-k_h, :-k_w] - integral[..., :-k_h, k_w:] -
                integral[..., k_h:, :-k_w])
        return sums / (k_h * k_w)

    def _fast_means(self, x):
        height, width = x.shape[-2:]
        r_h = min(self.max_reduction[0], next(r for r in self.REDUCTIONS if height % r == 0))
        r_w = min(self.max_reduction[1], next(r for r in self.REDUCTIONS if width % r == 0))
        integral = x[..., ::r_h, ::r_w].cumsum(-1).cumsum(-2)
        k_h = min(integral.shape[-2] - 1, self.kernel_size[0] // r_h)
        k_w = min(integral.shape[-1] - 1, self.kernel_size[1] // r_w)
        sums = (integral[..., :-k_h, :-k_w] - integral[..., :-k_h, k_w:] - integral[..., k_h:, :-k_w] +
                integral[..., k_h:, k_w:])
        return F.interpolate(sums / (k_h * k_w), scale_factor=(r_h, r_w))


class NAFBlock(nn.Module):
    """Two residual halves, each scaled by a learned per-channel factor that starts at zero (``beta``, ``gamma``).

    Spatial half: ``norm1``, 1x1 expand ``conv1``, 3x3 depthwise ``conv2``, SimpleGate ``sg``, simplified channel
    attention ``sca`` (global average pool and a 1x1 conv, multiplied in), 1x1 project ``conv3``. Channel half:
    ``norm2``, 1x1 expand ``conv4``, SimpleGate, 1x1 project ``conv5``.

    Args:
        c (int): channels.
        dw_expand (int): channel expansion of the spatial half (official: DW_Expand). Default: 2.
        ffn_expand (int): channel expansion of the channel half (official: FFN_Expand). Default: 2.
        drop_out_rate (float): dropout after each half. Default: 0.
    """

    def __init__(self, c, dw_expand=2, ffn_expand=2, drop_out_rate=0.):
        super().__init__()
        dw_channel = c * dw_expand
        self.conv1 = nn.Conv2d(c, dw_channel, 1)
        self.conv2 = nn.Conv2d(dw_channel, dw_channel, 3, padding=1, groups=dw_channel)
        self.conv3 = nn.Conv2d(dw_channel // 2, c, 1)
        self.sca = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(dw_channel // 2, dw_channel // 2, 1))
        self.sg = SimpleGate()
        ffn_channel = ffn_expand * c
        self.conv4 = nn.Conv2d(c, ffn_channel, 1)
        self.conv5 = nn.Conv2d(ffn_channel // 2, c, 1)
        self.norm1 = LayerNorm2d(c)
        self.norm2 = LayerNorm2d(c)
        self.dropout1 = nn.Dropout(drop_out_rate) if drop_out_rate > 0. else nn.Identity()
        self.dropout2 = nn.Dropout(drop_out_rate) if drop_out_rate > 0. else nn.Identity()
        self.beta = nn.Parameter(torch.zeros((1, c, 1, 1)))
        self.gamma = nn.Parameter(torch.zeros((1, c, 1, 1)))

    def forward(self, inp):
        x = self.sg(self.conv2(self.conv1(self.norm1(inp))))
        x = self.dropout1(self.conv3(x * self.sca(x)))
        y = inp + x * self.beta
        x = self.dropout2(self.conv5(self.sg(self.conv4(self.norm2(y)))))
        return y + x * self.gamma


@ARCH_REGISTRY.register()
class NAFNet(nn.Module):
    """NAFNet (Chen et al., ECCV 2022): a U-Net of NAFBlocks with a global residual, for denoising, deblurring, ...

    The encoder halves the resolution with stride-2 2x2 convolutions (``downs``, doubling the channels) after each
    stage (``encoders``); ``middle_blks`` work at the lowest resolution; the decoder doubles it with a 1x1
    convolution and pixel shuffle (``ups``, halving the channels), adds the skip connection and runs ``decoders``.
    Inputs of any size are padded with zeros at the bottom and right to a multiple of 2^len(enc_blk_nums) (the
    official ``check_image_size``) and the output is cropped back. Weights keep PyTorch's default initialisation,
    as in the official code.

    Args:
        img_channel (int): channels of the input and output image. Default: 3.
        width (int): channels of the first stage. Default: 16.
        middle_blk_num (int): NAFBlocks at the lowest resolution. Default: 1.
        enc_blk_nums (list[int]): NAFBlocks in each encoder stage, top to bottom. Default: [] (no down-sampling).
        dec_blk_nums (list[int]): NAFBlocks in each decoder stage, bottom to top; as long as ``enc_blk_nums``.
            Default: [].

    Published configurations (the NAFNet repository's option files) and their parameter counts here:
        GoPro width32: width 32, enc_blk_nums [1, 1, 1, 28], middle_blk_num 1, dec_blk_nums [1, 1, 1, 1]:
            17,111,907 parameters (published: about 17.1M), 664 state-dict entries.
        SIDD width32: width 32, enc_blk_nums [2, 2, 4, 8], middle_blk_num 12, dec_blk_nums [2, 2, 2, 2]:
            29,159,715 parameters (published: 29.16M, the authors' answer in NAFNet issue #60).
    tests/test_backbones.py checks both counts; tests/test_official_arch_keys.py the official keys and shapes.
    """

    def __init__(self, img_channel=3, width=16, middle_blk_num=1, enc_blk_nums=(), dec_blk_nums=()):
        super().__init__()
        if len(enc_blk_nums) != len(dec_blk_nums):
            raise ValueError(f"NAFNet options 'enc_blk_nums' {list(enc_blk_nums)} and 'dec_blk_nums' "
                             f'{list(dec_blk_nums)} must have the same length (one decoder stage per encoder stage).')
        # Built in the official order, so that one seed gives the official initial weights.
        self.intro = nn.Conv2d(img_channel, width, 3, padding=1)
        self.ending = nn.Conv2d(width, img_channel, 3, padding=1)
        self.encoders, self.decoders = nn.ModuleList(), nn.ModuleList()
        self.ups, self.downs = nn.ModuleList(), nn.ModuleList()
        chan = width
        for num in enc_blk_nums:
            self.encoders.append(nn.Sequential(*(NAFBlock(chan) for _ in range(num))))
            self.downs.append(nn.Conv2d(chan, 2 * chan, 2, 2))
            chan *= 2
        self.middle_blks = nn.Sequential(*(NAFBlock(chan) for _ in range(middle_blk_num)))
        for num in dec_blk_nums:
            self.ups.append(nn.Sequential(nn.Conv2d(chan, chan * 2, 1, bias=False), nn.PixelShuffle(2)))
            chan //= 2
            self.decoders.append(nn.Sequential(*(NAFBlock(chan) for _ in range(num))))
        self.padder_size = 2**len(self.encoders)

    def blocks_by_level(self):
        """(level, NAFBlock) for every block; level l works at 1 / 2^l of the (padded) input size."""
        depth = len(self.encoders)
        stages = [(level, stage) for level, stage in enumerate(self.encoders)] + [(depth, self.middle_blks)]
        stages += [(depth - 1 - index, stage) for index, stage in enumerate(self.decoders)]
        return [(level, block) for level, stage in stages for block in stage]

    def check_image_size(self, x):
        """``x`` padded with zeros at the bottom and right to a multiple of ``padder_size``."""
        height, width = x.shape[-2:]
        pad_h, pad_w = -height % self.padder_size, -width % self.padder_size
        return F.pad(x, (0, pad_w, 0, pad_h))

    def forward(self, inp):
        height, width = inp.shape[-2:]
        inp = self.check_image_size(inp)
        x = self.intro(inp)
        skips = []
        for encoder, down in zip(self.encoders, self.downs):
            x = encoder(x)
            skips.append(x)
            x = down(x)
        x = self.middle_blks(x)
        for decoder, up, skip in zip(self.decoders, self.ups, reversed(skips)):
            x = decoder(up(x) + skip)
        x = self.ending(x) + inp
        return x[..., :height, :width]


@ARCH_REGISTRY.register()
class NAFNetLocal(NAFNet):
    """NAFNet with test-time local statistics (TLSC): the official class the GoPro option files name.

    Each block's channel attention averages over a window of ``base_size = (int(1.5 H), int(1.5 W))`` (H, W: the
    training patch, from ``train_size``) scaled to its level, instead of over the whole map. Maps no larger than the
    window (training patches and anything up to 1.5 times their size) get the global mean, so the network equals
    NAFNet there; larger test images get the statistics the network saw in training. The windows are those the
    official ``Local_Base.convert`` sets with a forward pass at ``train_size``, computed here directly. Same
    parameters and state-dict keys as NAFNet: NAFNet checkpoints load into it strictly and vice versa.

    Args:
        img_channel, width, middle_blk_num, enc_blk_nums, dec_blk_nums: as for NAFNet (same defaults).
        train_size (tuple[int]): (N, C, H, W) of the training batches; only H and W matter. Default: (1, 3, 256, 256).
        fast_imp (bool): use the official sub-sampled approximation of the local means (LocalAvgPool2d).
            Default: False.
    """

    def __init__(self,
                 img_channel=3,
                 width=16,
                 middle_blk_num=1,
                 enc_blk_nums=(),
                 dec_blk_nums=(),
                 train_size=(1, 3, 256, 256),
                 fast_imp=False):
        super().__init__(img_channel, width, middle_blk_num, enc_blk_nums, dec_blk_nums)
        _, _, train_h, train_w = train_size
        self.train_size = tuple(train_size)
        self.base_size = (int(train_h * 1.5), int(train_w * 1.5))
        self.fast_imp = fast_imp
        padded_h, padded_w = train_h + -train_h % self.padder_size, train_w + -train_w % self.padder_size
        reduction = LocalAvgPool2d.REDUCTIONS[0]
        for level, block in self.blocks_by_level():
            map_h, map_w = padded_h // 2**level, padded_w // 2**level  # the map this block sees at train_size
            kernel_size = (map_h * self.base_size[0] // train_h, map_w * self.base_size[1] // train_w)
            max_reduction = (max(1, reduction * map_h // train_h), max(1, reduction * map_w // train_w))
            block.sca[0] = LocalAvgPool2d(kernel_size, fast_imp, max_reduction)
