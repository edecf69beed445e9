"""A frozen diffusion UNet and its noise schedule, used as a judge of images during training."""
import os
from os import path as osp

import torch
from basicsr.utils.registry import ARCH_REGISTRY
from diffusers import DDPMScheduler, UNet2DModel
from torch import nn

from ..priors import DEFAULT_PRIOR, load_guided_diffusion

# The trainable UNet of DiffusionPriorModel: ``network_g: {type: UNet2DModel, ...}`` builds it from YAML.
ARCH_REGISTRY.register(UNet2DModel)

PREDICTION_TYPES = {'eps': 'epsilon', 'epsilon': 'epsilon', 'v': 'v_prediction', 'v_prediction': 'v_prediction',
                    'sample': 'sample', 'x0': 'sample'}


class _MiddleBlockReached(Exception):
    """Raised by the middle-block hook to end a features-only UNet pass before the decoder runs."""


def _prior_folders(pretrained):
    """The UNet folder and the folder that may hold ``scheduler_config.json``, for a diffusers folder or pipeline."""
    if not osp.isdir(pretrained):
        raise FileNotFoundError(f"DiffusionPrior option 'pretrained': '{pretrained}' is not a folder. "
                                'Give a local diffusers UNet folder (config.json + diffusion_pytorch_model.safetensors) '
                                'or a diffusers pipeline folder with a unet/ subfolder.')
    if osp.isfile(osp.join(pretrained, 'unet', 'config.json')):  # pipeline layout, e.g. google/ddpm-*-256
        return osp.join(pretrained, 'unet'), osp.join(pretrained, 'scheduler')
    if not osp.isfile(osp.join(pretrained, 'config.json')):
        raise FileNotFoundError(f"DiffusionPrior option 'pretrained': '{pretrained}' has no config.json "
                                f"(found: {sorted(os.listdir(pretrained))[:10]}). Point it at the folder written by "
                                "UNet2DModel.save_pretrained, or at a pipeline folder holding unet/config.json.")
    return pretrained, pretrained


def load_unet_strict(folder):
    """Load a diffusers UNet2DModel from a local folder; any missing, unexpected or mismatched key is an error."""
    try:
        unet, info = UNet2DModel.from_pretrained(
            folder, output_loading_info=True, local_files_only=True, low_cpu_mem_usage=False)
    except (OSError, RuntimeError, ValueError) as error:
        raise ValueError(f"DiffusionPrior option 'pretrained': cannot load the UNet in '{folder}': {error}\nCheck that "
                         'the weights file is complete and that config.json is the one saved with it.') from error
    problems = {kind: keys for kind, keys in info.items() if keys}
    if problems:
        raise ValueError(f"DiffusionPrior option 'pretrained': the weights in '{folder}' do not match its config.json: "
                         f'{problems}. Use the config.json that was saved with these weights.')
    return unet


def _load_guided_diffusion_prior(pretrained, options):
    """The UNet and schedule of a guided-diffusion ``.pt`` checkpoint, converted in memory."""
    if options is None:
        raise ValueError(f"DiffusionPrior option 'pretrained': '{pretrained}' is a file, not a diffusers folder. For a "
                         "guided-diffusion (ADM) .pt checkpoint add the option 'guided_diffusion' with its preset or "
                         "flags, e.g. guided_diffusion: {preset: 256x256_diffusion_uncond}, or convert it once with "
                         'scripts/convert_guided_diffusion.py and point pretrained at the folder it writes.')
    if not osp.isfile(pretrained):
        raise FileNotFoundError(f"DiffusionPrior option 'pretrained': '{pretrained}' is not a file; with option "
                                "'guided_diffusion' it must be a guided-diffusion .pt checkpoint.")
    try:
        return load_guided_diffusion(pretrained, **dict(options))
    except ValueError as error:
        raise ValueError(f"DiffusionPrior option 'guided_diffusion' ('{pretrained}'): {error}") from error


@ARCH_REGISTRY.register()
class DiffusionPrior(nn.Module):
    """A frozen diffusers ``UNet2DModel`` with its DDPM noise schedule.

    It always stays in eval mode with ``requires_grad=False`` on every parameter; gradients still flow through it
    into its input. It lives inside the loss, so it is never saved in a restorer's checkpoint or wrapped in DDP.

    Args:
        pretrained (str | None): ``default`` (the prior shipped in the package: basicsr_diffloss/priors/default,
            see its MODEL_CARD.md), a local diffusers UNet folder (``config.json`` + weights, loaded strictly) or a
            pipeline folder with ``unet/`` (and ``scheduler/``) subfolders. A ``scheduler_config.json`` found beside
            the UNet sets the schedule and the prediction type unless the options below override them. With
            ``guided_diffusion``: a guided-diffusion ``.pt`` checkpoint.
        unet (dict | None): inline ``UNet2DModel`` keyword arguments, for tests and for priors trained from scratch
            (random weights). The rule: give ``pretrained`` or ``unet``; with neither, the default prior is loaded,
            as with ``pretrained: default``.
        prediction_type (str | None): what the UNet predicts: ``eps`` (``epsilon``), ``v`` (``v_prediction``) or
            ``sample`` (``x0``). Default: the scheduler config's, else ``eps``. The output is always converted to eps.
        num_train_timesteps (int | None): schedule length. Default: scheduler config's, else 1000.
        beta_schedule (str | None): diffusers beta schedule name. Default: scheduler config's, else ``linear``.
        beta_start (float | None): first beta. Default: scheduler config's, else 1e-4.
        beta_end (float | None): last beta. Default: scheduler config's, else 0.02.
        guided_diffusion (dict | None): ``pretrained`` is an OpenAI guided-diffusion (ADM) ``.pt`` state dict,
            converted in memory; the dict holds its guided-diffusion flags: ``preset`` (``256x256_diffusion_uncond``,
            ``256x256_diffusion``, ``64x64_diffusion``, ``lsun_bedroom``, ``lsun_cat``, ``lsun_horse``,
            ``ffhq_256``, ...: ``basicsr_diffloss.priors.PRESETS``) and/or flags with guided-diffusion's names that
            override it (``num_channels``, ``num_res_blocks``, ``attention_resolutions``, ``num_head_channels``,
            ``learn_sigma``, ``use_new_attention_order``, ...). Its ``diffusion_steps`` and ``noise_schedule`` give
            the schedule. See docs/priors.md. Default: None (``pretrained`` is a diffusers folder).

    ``forward(x_t, t, class_labels=None, features_only=False)`` takes noised images in [-1, 1] and integer
    timesteps (and class labels for a class-conditional UNet) and returns ``(eps, h)``: the predicted noise (the first
    3 of 6 channels for a learned-sigma UNet) and the middle block's output (the "h-space"). With
    ``features_only=True`` the pass stops after the middle block (the encoder half of the cost) and eps is None.
    ``set_execution`` chooses precision, memory format, gradient checkpointing and compilation.
    """

    def __init__(self, pretrained=None, unet=None, prediction_type=None, num_train_timesteps=None,
                 beta_schedule=None, beta_start=None, beta_end=None, guided_diffusion=None):
        super().__init__()
        if pretrained is not None and unet is not None:
            raise ValueError("DiffusionPrior takes one of 'pretrained' (a local diffusers UNet folder) and 'unet' (an "
                             'inline UNet2DModel config), not both.')
        if pretrained == 'default' or (pretrained is None and unet is None):
            pretrained = DEFAULT_PRIOR
        schedule = {}
        if guided_diffusion is not None and pretrained is None:
            raise ValueError("DiffusionPrior option 'guided_diffusion' describes the .pt checkpoint given in "
                             "'pretrained'; give 'pretrained' instead of 'unet'.")
        if pretrained is not None and (guided_diffusion is not None or osp.isfile(str(pretrained))):
            self.unet, schedule = _load_guided_diffusion_prior(str(pretrained), guided_diffusion)
        elif pretrained is not None:
            unet_folder, scheduler_folder = _prior_folders(str(pretrained))
            self.unet = load_unet_strict(unet_folder)
            if osp.isfile(osp.join(scheduler_folder, 'scheduler_config.json')):
                schedule = dict(DDPMScheduler.load_config(scheduler_folder))
        else:
            self.unet = UNet2DModel(**unet)
        overrides = dict(num_train_timesteps=num_train_timesteps, beta_schedule=beta_schedule, beta_start=beta_start,
                         beta_end=beta_end, prediction_type=prediction_type)
        schedule.update({key: value for key, value in overrides.items() if value is not None})
        schedule.setdefault('prediction_type', 'epsilon')
        if schedule['prediction_type'] not in PREDICTION_TYPES:
            raise ValueError(f"DiffusionPrior option 'prediction_type': '{schedule['prediction_type']}' is not one of "
                             f'{sorted(PREDICTION_TYPES)}.')
        schedule['prediction_type'] = PREDICTION_TYPES[schedule['prediction_type']]
        self.scheduler = DDPMScheduler.from_config(schedule)
        self.prediction_type = self.scheduler.config.prediction_type
        self.num_train_timesteps = self.scheduler.config.num_train_timesteps
        self.register_buffer('alphas_cumprod', self.scheduler.alphas_cumprod.clone().float(), persistent=False)

        config = self.unet.config
        self.in_channels = config.in_channels
        if config.out_channels not in (config.in_channels, 2 * config.in_channels):
            raise ValueError(f'DiffusionPrior: a UNet with {config.in_channels} input channels must have as many '
                             f'output channels (or twice as many, learned sigma), not {config.out_channels}.')
        self.learned_sigma = config.out_channels == 2 * config.in_channels
        self.size_factor = 2**(len(config.block_out_channels) - 1)

        self._h = None
        self._stop_after_mid_block = False
        self.dtype = torch.float32
        self.memory_format = torch.contiguous_format
        self.unet.mid_block.register_forward_hook(self._keep_mid_block_output)
        self.requires_grad_(False)
        super().train(False)

    def _keep_mid_block_output(self, module, inputs, output):
        self._h = output
        if self._stop_after_mid_block:
            raise _MiddleBlockReached

    def set_execution(self, dtype=torch.float32, channels_last=False, gradient_checkpointing=False, compile=False):
        """How the UNet runs; none of these changes what it computes beyond rounding.

        Args:
            dtype (torch.dtype): the UNet's weights and activations (inputs are cast to it in ``forward``).
            channels_last (bool): NHWC weights and inputs (faster convolutions on tensor-core GPUs).
            gradient_checkpointing (bool): recompute each block's activations in the backward pass instead of
                storing them (diffusers' checkpointing: only passes that record a graph are affected).
            compile (bool): ``torch.compile`` the UNet in place (the first calls of each new shape are slow).
        """
        # nn.Module.to: diffusers' own .to warns about fp32-only modules, and UNet2DModel has none.
        nn.Module.to(self.unet, dtype=dtype)
        self.dtype = dtype
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        nn.Module.to(self.unet, memory_format=self.memory_format)
        if gradient_checkpointing:
            self.unet.enable_gradient_checkpointing()
        else:
            self.unet.disable_gradient_checkpointing()
        if compile:
            self.unet.compile()

    def train(self, mode=True):
        """The prior is frozen: it stays in eval mode whatever the caller asks."""
        return self

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
        if x_t.shape[1] != self.in_channels:
            raise ValueError(f'DiffusionPrior expects {self.in_channels}-channel images, got shape {tuple(x_t.shape)}.')
        if class_labels is None and self.unet.class_embedding is not None:
            raise ValueError('DiffusionPrior: this UNet is class-conditional and needs class_labels, which DiffLoss '
                             'does not give; use an unconditional prior (e.g. guided_diffusion preset '
                             '256x256_diffusion_uncond).')
        unet_input = x_t.to(self.dtype).contiguous(memory_format=self.memory_format)
        self._stop_after_mid_block = features_only
        try:
            output = self.unet(unet_input, t, class_labels=class_labels).sample
        except _MiddleBlockReached:
            output = None
        finally:
            self._stop_after_mid_block = False
        h, self._h = self._h, None
        if output is None:
            return None, h
        if self.learned_sigma:
            output = output[:, :self.in_channels]
        return self.to_eps(output, x_t, t), h
