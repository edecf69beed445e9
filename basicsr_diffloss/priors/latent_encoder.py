"""LatentEncoder: the encoder half of a Stable Diffusion-family VAE, mapping images to the latents its UNet denoises."""
from contextlib import nullcontext

import torch
from torch import nn

from .compiled_graphs import donated_buffers_off


class LatentEncoder(nn.Module):
    """Images in [-1, 1] to latents: ``(mean - shift_factor) * scaling_factor`` of the VAE encoder's posterior, its
    mean and no sample, so that equal images give equal latents (the ground truth's latent is deterministic).

    Args:
        vae (diffusers.AutoencoderKL): the pipeline's VAE; its decoder is dropped here (a loss that compares latents
            never decodes), its ``scaling_factor`` and ``shift_factor`` (0 where the config has none) are kept.

    Attributes: ``factor`` (image side / latent side), ``image_channels``, ``latent_channels``, ``force_upcast``
    (the config asks for float32 where the pipeline would run fp16: the SD and SDXL VAEs overflow in fp16).
    """

    def __init__(self, vae):
        super().__init__()
        vae.decoder, vae.post_quant_conv = None, None
        self.vae = vae
        config = vae.config
        self.scaling_factor = float(config.scaling_factor)
        self.shift_factor = float(getattr(config, 'shift_factor', None) or 0.0)
        self.factor = 2**(len(config.block_out_channels) - 1)
        self.image_channels, self.latent_channels = config.in_channels, config.latent_channels
        self.force_upcast = bool(getattr(config, 'force_upcast', False))
        self.dtype, self.memory_format = torch.float32, torch.contiguous_format
        self.compiled = False

    def set_execution(self, dtype, memory_format, gradient_checkpointing, compile):
        """Run in ``dtype`` (float32 instead of fp16 where ``force_upcast``) and ``memory_format``, with gradient
        checkpointing of the encoder's blocks and ``torch.compile`` of the encoder as asked."""
        self.dtype = torch.float32 if dtype == torch.float16 and self.force_upcast else dtype
        self.memory_format = memory_format
        nn.Module.to(self.vae, dtype=self.dtype, memory_format=memory_format)
        if gradient_checkpointing:
            self.vae.enable_gradient_checkpointing()
        else:
            self.vae.disable_gradient_checkpointing()
        self.compiled = compile
        if compile:  # its calls compile graphs that donate no buffers (compiled_graphs.py)
            self.vae.encoder.compile()

    def forward(self, image):
        image = image.to(self.dtype).contiguous(memory_format=self.memory_format)
        with donated_buffers_off() if self.compiled else nullcontext():
            mean = self.vae.encode(image).latent_dist.mean
        return (mean.float() - self.shift_factor) * self.scaling_factor
