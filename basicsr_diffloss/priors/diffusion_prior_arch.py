"""DiffusionPrior: a frozen diffusion UNet and its noise schedule, used as a judge of images during training.

It owns how the prior runs (precision, memory format, checkpointing, compile), how images enter it (range,
channels, sizes its UNet can take; for a latent prior, the VAE encoder and the prompt) and the conversions between
its predictions (eps, x0). Its weights come from a loader: a diffusers folder (diffusers_folder.py), a Stable
Diffusion-family pipeline folder (stable_diffusion.py), a guided-diffusion checkpoint (guided_diffusion.py) or the
shipped default (default_prior.py).
"""
import inspect
from contextlib import nullcontext
from os import path as osp

import torch
import torch.nn.functional as F
from basicsr.utils import get_root_logger
from basicsr.utils.registry import ARCH_REGISTRY
from diffusers import DDPMScheduler, UNet2DModel
from torch import nn

from ..options import OptionError, choice, flag
from .compiled_graphs import donated_buffers_off
from .default_prior import DEFAULT_PRIOR
from .diffusers_folder import load_diffusers_folder
from .guided_diffusion import load_guided_diffusion_prior
from .stable_diffusion import is_latent_pipeline_folder, load_stable_diffusion_folder, refuse_non_prior

# The trainable UNet of DiffusionPriorModel: ``network_g: {type: UNet2DModel, ...}`` builds it from YAML.
ARCH_REGISTRY.register(UNet2DModel)

PREDICTION_TYPES = {'eps': 'epsilon', 'v': 'v_prediction', 'sample': 'sample'}
DTYPES = {'fp32': torch.float32, 'bf16': torch.bfloat16, 'fp16': torch.float16}


def native_bf16(device):
    """Whether ``device`` multiplies bf16 natively: a CUDA GPU of compute capability 8.0 or above (Ampere and
    later), or a CPU with AVX512-BF16 or AMX (where the default step measured 1.5x faster in bf16 than in fp32,
    docs/performance.md)."""
    if device.type == 'cuda':
        # not torch.cuda.is_bf16_supported(): it also says yes on older GPUs (V100, T4) that only emulate bf16
        return torch.cuda.get_device_capability(device) >= (8, 0)
    cpu = getattr(torch, 'cpu', None)
    return device.type == 'cpu' and any(getattr(cpu, check, lambda: False)()
                                        for check in ('_is_avx512_bf16_supported', '_is_amx_tile_supported'))


def resolve_dtype(name, device):
    """The torch dtype of the option ``dtype: name`` on ``device``; ``auto`` is bf16 where the device multiplies it
    natively (``native_bf16``), else fp32."""
    if name != 'auto':
        return DTYPES[name]
    return torch.bfloat16 if native_bf16(device) else torch.float32


class _MiddleBlockReached(Exception):
    """Raised by the middle-block hook to end a features-only UNet pass before the decoder runs."""


def _refuse_unet_without_mid_block(unet, pretrained, inline):
    """An error naming the option that gave a UNet without a middle block (diffusers' ``mid_block_type: None``)."""
    if unet.mid_block is not None:
        return
    if inline:
        raise OptionError("DiffusionPrior option 'unet': mid_block_type None gives a UNet without a middle block, "
                          "whose output is the h-space DiffLoss compares (and where an encoder-only pass stops); "
                          "remove mid_block_type (diffusers' default: UNetMidBlock2D).")
    raise OptionError(f"DiffusionPrior option 'pretrained': the UNet of '{pretrained or 'default'}' has no middle block "
                      '(mid_block_type None in its config.json), whose output is the h-space DiffLoss compares (and '
                      'where an encoder-only pass stops); use a UNet trained with a middle block (diffusers\' default '
                      'mid_block_type: UNetMidBlock2D).')


def _load(pretrained, unet, guided_diffusion, prompt, prompt_embeds):
    """``(UNet, scheduler config dict, LatentEncoder | None, TextConditioning | None)`` from the loader that
    ``pretrained`` / ``unet`` call for."""
    if pretrained is not None and unet is not None:
        raise OptionError("DiffusionPrior takes one of 'pretrained' (a local diffusers UNet folder) and 'unet' (an "
                          'inline UNet2DModel config), not both.')
    if guided_diffusion is not None and pretrained is None:
        raise OptionError("DiffusionPrior option 'guided_diffusion' describes the .pt checkpoint given in "
                          "'pretrained'; give 'pretrained' instead of 'unet'.")
    pretrained = None if unet is not None else DEFAULT_PRIOR if pretrained in (None, 'default') else str(pretrained)
    if pretrained is not None and is_latent_pipeline_folder(pretrained):
        return load_stable_diffusion_folder(pretrained, prompt, prompt_embeds)
    given = [name for name, value in (('prompt', prompt), ('prompt_embeds', prompt_embeds)) if value is not None]
    if given:
        raise OptionError(f'DiffusionPrior options {given} condition a Stable Diffusion-family (latent) prior; '
                          f"'{pretrained or 'unet'}' is an unconditional pixel-space prior: remove them.")
    if unet is not None:
        get_root_logger().warning("DiffusionPrior option 'unet' without 'pretrained' builds a prior with random "
                                  'weights: as a DiffLoss judge it pulls toward noise and destroys training (README); '
                                  'give pretrained: default or a trained prior, unless this is a test.')
        return UNet2DModel(**unet), {}, None, None
    if guided_diffusion is None:
        refuse_non_prior(pretrained)
    if guided_diffusion is not None or osp.isfile(pretrained):
        return (*load_guided_diffusion_prior(pretrained, guided_diffusion), None, None)
    return (*load_diffusers_folder(pretrained), None, None)


@ARCH_REGISTRY.register()
class DiffusionPrior(nn.Module):
    """A frozen diffusion UNet with its DDPM noise schedule: a pixel-space ``UNet2DModel``, or a Stable
    Diffusion-family ``UNet2DConditionModel`` with its VAE encoder and a constant prompt (a latent prior).

    It always stays in eval mode with ``requires_grad=False`` on every parameter; gradients still flow through it
    into its input. It lives inside the loss, so it is never saved in a restorer's checkpoint or wrapped in DDP.

    Where the weights come from:
        pretrained (str | None): ``default`` (the prior shipped in the package: basicsr_diffloss/priors/default,
            see its MODEL_CARD.md), a local diffusers UNet folder (``config.json`` + weights, loaded strictly) or a
            pipeline folder with ``unet/`` (and ``scheduler/``) subfolders. A ``scheduler_config.json`` found beside
            the UNet sets the schedule and the prediction type unless the options below override them. With
            ``guided_diffusion``: a guided-diffusion ``.pt`` checkpoint. A Stable Diffusion-family pipeline folder
            (``model_index.json`` with ``unet/``, ``vae/``, ``scheduler/``, text encoders: SD 1.x, 2.x, SD-Turbo,
            SDXL) is a latent prior: images are encoded by its VAE encoder (the latent mean times
            ``scaling_factor``), and DiffLoss noises and compares latents (docs/priors.md). Default: None (with
            ``unet`` None too: the default prior).
        unet (dict | None): inline ``UNet2DModel`` keyword arguments, for tests and for priors trained from scratch
            (random weights). The rule: give ``pretrained`` or ``unet``; with neither, the default prior is loaded,
            as with ``pretrained: default``. Default: None.
        guided_diffusion (dict | None): ``pretrained`` is an OpenAI guided-diffusion (ADM) ``.pt`` state dict,
            converted in memory; the dict holds ``model``, a published model whose flags to start from
            (``256x256_diffusion_uncond``, ``256x256_diffusion``, ``64x64_diffusion``, ``lsun_bedroom``,
            ``lsun_cat``, ``lsun_horse``, ``ffhq_256``, ...: ``basicsr_diffloss.priors.MODELS``), and/or flags with
            guided-diffusion's names that override it (``num_channels``, ``num_res_blocks``,
            ``attention_resolutions``, ``num_head_channels``, ``learn_sigma``, ``use_new_attention_order``, ...).
            Its ``diffusion_steps`` and ``noise_schedule`` give the schedule. See docs/priors.md. Default: None
            (``pretrained`` is a diffusers folder).

    The conditioning of a latent prior (an error for a pixel-space prior):
        prompt (str | None): encoded once at start-up with the folder's text encoder(s) (SDXL: both, with the
            pooled embedding; the ``time_ids`` follow each call's size), after which the encoders are freed; needs
            the ``transformers`` package. Default: None, the empty prompt.
        prompt_embeds (str | None): a ``.safetensors`` file with ``prompt_embeds`` (1, tokens, width) and, for SDXL,
            ``pooled_prompt_embeds`` (1, width), used instead of ``prompt`` (a folder without text encoders works).
            Default: None.

    The schedule (each defaults to the scheduler config's, else the value given):
        prediction_type (str | None): what the UNet predicts: ``eps``, ``v`` or ``sample`` (x0). Default: ``eps``.
            The output is always converted to eps.
        num_train_timesteps (int | None): schedule length. Default: 1000.
        beta_schedule (str | None): diffusers beta schedule name. Default: ``linear``.
        beta_start (float | None): first beta. Default: 1e-4.
        beta_end (float | None): last beta. Default: 0.02.

    How it runs (docs/performance.md; none changes what it computes beyond rounding; applied at the first call, on
    the device the prior has moved to):
        dtype (str): the UNet's weights and activations: ``fp32``, ``bf16``, ``fp16`` or ``auto``: ``bf16`` where
            the device multiplies it natively (a CUDA GPU of compute capability 8.0 or above, Ampere on, not a V100
            or T4, which only emulate it, slowly; a CPU with AVX512-BF16 or AMX), else ``fp32``. Noising, the
            conversions and the loss stay in float32. Default: ``auto``.
        channels_last (bool | str): NHWC memory format (faster convolutions on tensor-core GPUs), or ``auto``: on
            where it was measured faster, a CPU running the prior in bf16 (oneDNN's bf16 convolutions prefer NHWC:
            the default step 1.72x an L1 step instead of 2.02x, docs/performance.md), else off. Default: ``auto``.
        gradient_checkpointing (bool): recompute each block's activations in the backward pass instead of storing
            them (only passes that record a graph are affected). Default: false.
        compile (bool): ``torch.compile`` the UNet in place (the first calls of each new shape are slow).
            Default: false.
    Each applies to a latent prior's VAE encoder too (which stays float32 under ``fp16`` where its config says
    ``force_upcast``).

    ``forward(x_t, t, class_labels=None, features_only=False)`` takes noised images in [-1, 1] and integer
    timesteps (and class labels for a class-conditional UNet) and returns ``(eps, h)``: the predicted noise (the first
    3 of 6 channels for a learned-sigma UNet) and the middle block's output (the "h-space"). With
    ``features_only=True`` the pass stops after the middle block (the encoder half of the cost) and eps is None.
    ``to_input`` maps images to what the UNet denoises (pixels in [-1, 1], or a latent prior's latents),
    ``fit_size`` crops images to sizes it takes (``size_factor`` pixels: for a latent prior the VAE's factor times
    the UNet's), ``add_noise`` and ``to_x0`` convert between clean inputs, noised ones and predictions.
    """

    def __init__(self, pretrained=None, unet=None, prediction_type=None, num_train_timesteps=None,
                 beta_schedule=None, beta_start=None, beta_end=None, guided_diffusion=None, dtype='auto',
                 channels_last='auto', gradient_checkpointing=False, compile=False, prompt=None, prompt_embeds=None):
        super().__init__()
        self.unet, schedule, self.encoder, self.conditioning = _load(pretrained, unet, guided_diffusion, prompt,
                                                                     prompt_embeds)
        _refuse_unet_without_mid_block(self.unet, pretrained, inline=unet is not None)
        if prediction_type is not None:
            schedule['prediction_type'] = PREDICTION_TYPES[choice('DiffusionPrior', 'prediction_type',
                                                                  prediction_type, PREDICTION_TYPES)]
        overrides = dict(num_train_timesteps=num_train_timesteps, beta_schedule=beta_schedule, beta_start=beta_start,
                         beta_end=beta_end)
        schedule.update({key: value for key, value in overrides.items() if value is not None})
        schedule.setdefault('prediction_type', 'epsilon')
        choice('DiffusionPrior scheduler config', 'prediction_type', schedule['prediction_type'],
               PREDICTION_TYPES.values())
        self.scheduler = DDPMScheduler.from_config(schedule)
        self.prediction_type = self.scheduler.config.prediction_type
        self.num_train_timesteps = self.scheduler.config.num_train_timesteps
        self.register_buffer('alphas_cumprod', self.scheduler.alphas_cumprod.clone().float(), persistent=False)

        config = self.unet.config
        self.latent_channels = config.in_channels  # what the UNet denoises
        self.in_channels = self.encoder.image_channels if self.encoder is not None else config.in_channels  # images
        if config.out_channels not in (config.in_channels, 2 * config.in_channels):
            raise OptionError(f'DiffusionPrior: a UNet with {config.in_channels} input channels must have as many '
                              f'output channels (or twice as many, learned sigma), not {config.out_channels}.')
        self.learned_sigma = config.out_channels == 2 * config.in_channels
        self.unet_size_factor = 2**(len(config.block_out_channels) - 1)  # in the UNet's input, pixels or latents
        self.size_factor = self.unet_size_factor * (self.encoder.factor if self.encoder is not None else 1)

        self._h = None
        self._stop_after_mid_block = False
        self.dtype = None  # resolved with the other execution options at the first call
        self.memory_format = torch.contiguous_format
        self.compiled = False
        self.set_execution(dtype, channels_last, gradient_checkpointing, compile)
        self.unet.mid_block.register_forward_hook(self._keep_mid_block_output)
        self.requires_grad_(False)
        super().train(False)

    def _keep_mid_block_output(self, module, inputs, output):
        self._h = output
        if self._stop_after_mid_block:
            raise _MiddleBlockReached

    def set_execution(self, dtype='auto', channels_last='auto', gradient_checkpointing=False, compile=False):
        """Choose how the UNet runs (the options of the same names); applied at the next call."""
        choice('DiffusionPrior', 'dtype', dtype, [*DTYPES, 'auto'])
        if channels_last != 'auto':
            flag('DiffusionPrior', 'channels_last', channels_last)
        self._pending_execution = dict(dtype=dtype, channels_last=channels_last,
                                       gradient_checkpointing=flag('DiffusionPrior', 'gradient_checkpointing',
                                                                   gradient_checkpointing),
                                       compile=flag('DiffusionPrior', 'compile', compile))

    def _apply_execution(self):
        options, self._pending_execution = self._pending_execution, None
        self.dtype = resolve_dtype(options['dtype'], self.alphas_cumprod.device)
        if self.dtype == torch.float16 and self.alphas_cumprod.device.type == 'cpu':
            get_root_logger().warning("DiffusionPrior option 'dtype': fp16 on the CPU, which has no fast fp16 "
                                      'arithmetic, runs many times slower than fp32; use dtype: auto (bf16 where the '
                                      'CPU has it, else fp32) or fp32.')
        # nn.Module.to: diffusers' own .to warns about fp32-only modules, and UNet2DModel has none.
        nn.Module.to(self.unet, dtype=self.dtype)
        channels_last = options['channels_last']
        if channels_last == 'auto':
            channels_last = self.alphas_cumprod.device.type == 'cpu' and self.dtype == torch.bfloat16
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        nn.Module.to(self.unet, memory_format=self.memory_format)
        if options['gradient_checkpointing']:
            self.unet.enable_gradient_checkpointing()
        else:
            self.unet.disable_gradient_checkpointing()
        self.compiled = options['compile']
        if self.compiled:  # its calls compile graphs that donate no buffers (compiled_graphs.py)
            self.unet.compile()
        if self.encoder is not None:
            self.encoder.set_execution(self.dtype, self.memory_format, options['gradient_checkpointing'],
                                       options['compile'])

    def train(self, mode=True):
        """The prior is frozen: it stays in eval mode whatever the caller asks."""
        return self

    def check_unconditional(self, where):
        """Raise an error naming ``where`` if the UNet needs class labels (DiffLoss gives none)."""
        if self.unet.class_embedding is not None:
            raise OptionError(f'{where}: the prior is class-conditional, and DiffLoss gives it no class labels; use an '
                              'unconditional prior (e.g. guided_diffusion model 256x256_diffusion_uncond).')

    def to_input(self, image, input_range):
        """Map images from ``input_range`` to [-1, 1] in float32, replicating one channel to the prior's channels;
        for a latent prior, then to its latents (VAE encoder; the graph is kept where ``image`` has one)."""
        low, high = input_range
        image = (image.float() - low) * (2 / (high - low)) - 1
        if image.shape[1] == 1 and self.in_channels != 1:
            image = image.expand(-1, self.in_channels, -1, -1)
        if image.shape[1] != self.in_channels:
            raise ValueError(f'DiffLoss: the images have {image.shape[1]} channels but the prior takes '
                             f'{self.in_channels}; use a prior trained on {image.shape[1]}-channel images.')
        if self.encoder is None:
            return image
        if self._pending_execution is not None:
            self._apply_execution()
        return self.encoder(image)

    def fit_size(self, images, crop_size, offsets):
        """Each of ``images`` (the same size) cropped to at most ``crop_size`` (None: the whole image) and down to
        multiples of the size factor (replicate-padded up to it if smaller), at the window that
        ``offsets(room_h, room_w) -> (top, left)`` picks in the room left."""
        factor = self.size_factor
        height, width = images[0].shape[-2:]
        pad_h, pad_w = max(factor - height, 0), max(factor - width, 0)
        if pad_h or pad_w:
            images = [F.pad(image, (0, pad_w, 0, pad_h), mode='replicate') for image in images]
            height, width = images[0].shape[-2:]
        crop_h = min(crop_size or height, height) // factor * factor
        crop_w = min(crop_size or width, width) // factor * factor
        top, left = offsets(height - crop_h, width - crop_w)
        return [image[..., top:top + crop_h, left:left + crop_w] for image in images]

    def abar(self, t):
        """``alphas_cumprod[t]`` shaped (B, 1, 1, 1), in float32."""
        return self.alphas_cumprod[t].view(-1, 1, 1, 1)

    def add_noise(self, x0, noise, t):
        """Forward diffusion ``sqrt(abar_t) x0 + sqrt(1 - abar_t) noise``, computed in float32."""
        abar = self.abar(t)
        return abar.sqrt() * x0.float() + (1 - abar).sqrt() * noise.float()

    def to_eps(self, output, x_t, t):
        """Convert the UNet's output of this prior's prediction type to predicted noise."""
        if self.prediction_type == 'epsilon':
            return output
        abar = self.abar(t)
        if self.prediction_type == 'v_prediction':
            return abar.sqrt() * output + (1 - abar).sqrt() * x_t
        return (x_t - abar.sqrt() * output) / (1 - abar).sqrt()  # 'sample'

    def to_x0(self, eps, x_t, t):
        """The clean image implied by predicted noise: ``(x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)``."""
        abar = self.abar(t)
        return (x_t.float() - (1 - abar).sqrt() * eps.float()) / abar.sqrt()

    def forward(self, x_t, t, class_labels=None, features_only=False):
        if x_t.shape[1] != self.latent_channels:
            raise ValueError(f'DiffusionPrior expects {self.latent_channels}-channel inputs, got shape '
                             f'{tuple(x_t.shape)}{" (latents: see to_input)" if self.encoder is not None else ""}.')
        if class_labels is None:
            self.check_unconditional('DiffusionPrior')
        if self._pending_execution is not None:
            self._apply_execution()
        unet_input = x_t.to(self.dtype).contiguous(memory_format=self.memory_format)
        if self.conditioning is None:
            conditioning = dict(class_labels=class_labels)
        else:
            pixels = [side * self.encoder.factor for side in x_t.shape[-2:]]
            conditioning = self.conditioning.unet_kwargs(len(x_t), pixels, self.dtype)
        self._stop_after_mid_block = features_only
        try:
            with donated_buffers_off() if self.compiled else nullcontext():
                output = self.unet(unet_input, t, **conditioning).sample
        except _MiddleBlockReached:
            output = None
        finally:
            self._stop_after_mid_block = False
        h, self._h = self._h, None
        if output is None:
            return None, h
        if self.learned_sigma:
            output = output[:, :self.latent_channels]
        return self.to_eps(output.float(), x_t, t), h


# How a prior runs (set_execution's options: dtype, memory format, checkpointing, compile), read from its signature.
EXECUTION_OPTIONS = tuple(name for name in inspect.signature(DiffusionPrior.set_execution).parameters if name != 'self')
