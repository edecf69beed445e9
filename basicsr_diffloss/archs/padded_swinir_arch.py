"""BasicSR's SwinIR made to accept any input size, so that DiffLossSRModel can validate it on benchmark images."""
import torch.nn.functional as F
from basicsr.archs.swinir_arch import SwinIR
from basicsr.utils.registry import ARCH_REGISTRY


@ARCH_REGISTRY.register()
class PaddedSwinIR(SwinIR):
    """BasicSR's SwinIR, padding its input to a multiple of ``window_size`` and cropping the output back.

    BasicSR's SwinIR needs sides that are multiples of the window size; its SwinIRModel pads in ``test()``, but
    DiffLossSRModel is SRModel's subclass, so the padding lives here instead. The parameters and state-dict keys are
    SwinIR's own: SwinIR checkpoints load unchanged, and the network trains exactly as SwinIR on patches whose sides
    are multiples of the window size.

    Args:
        window_size (int): SwinIR's attention window. Default: 7 (SwinIR's).
        **kwargs: every other SwinIR option (``upscale``, ``img_size``, ``embed_dim``, ``depths``, ``num_heads``,
            ``mlp_ratio``, ``upsampler``, ``resi_connection``, ``img_range``, ...), with SwinIR's defaults.

    Padding is by reflection (replication where the input is smaller than the padding).
    """

    def __init__(self, window_size=7, **kwargs):
        super().__init__(window_size=window_size, **kwargs)
        self.window_size = window_size

    def forward(self, x):
        height, width = x.shape[-2:]
        pad_h, pad_w = -height % self.window_size, -width % self.window_size
        if pad_h or pad_w:
            mode = 'reflect' if pad_h < height and pad_w < width else 'replicate'
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        scale = self.upscale if self.upsampler else 1
        return super().forward(x)[..., :height * scale, :width * scale]
