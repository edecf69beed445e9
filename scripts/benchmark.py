"""What DiffLoss costs: ms per full training step, peak memory and the FLOP floor, side by side in one run.

A step is what BasicSR's SRModel does per iteration: the restorer's forward pass, the loss, the backward pass and an
Adam step. Configurations:

- restorers (``RESTORERS``): EDSR x4 (64 features, 16 blocks; GT 192, batch 16: BasicSR's EDSR-M setting), SwinIR
  classical x4 (embed 180, depths and heads 6 x 6, window 8, MLP ratio 2, pixelshuffle; LQ 64 = GT 256, batch 4 per
  GPU: the paper's 32 over 8 GPUs) and IAT (low light, same size in and out; GT 256, batch 8);
- losses: ``l1``; ``l1+vgg`` (BasicSR PerceptualLoss on VGG19 conv5_4, random weights: none can be downloaded);
  ``l1+diffloss``: L1 + DiffLoss on a prior of one shape, random weights except ``default``: ``default`` (the shipped
  4.3M prior), ``ddpm256`` (google/ddpm-ema-church-256's UNet, 113.7M) or ``adm256`` (guided-diffusion
  256x256_diffusion_uncond, 552.8M), or a latent prior: ``sd15`` (Stable Diffusion 1.5's UNet and VAE, 860M + 84M)
  or ``sdxl`` (SDXL base's UNet and VAE, 2.57G + 84M), written as a pipeline folder with a prompt_embeds file and
  held in bf16 between configurations (``tiny_sd``: a tiny one), under each DiffLoss variant of ``VARIANTS`` (its
  speed options).

Configurations are timed round robin (``--repeats`` sweeps, each rebuilding the configuration from scratch, median
taken), so that the ratios compare times taken side by side. For each it reports:

- ms/step (warm-up steps first; for ``every: k`` the mean over a multiple of k steps), and its ratio to ``l1`` and to
  ``l1+vgg`` of the same restorer in the same run;
- peak memory (CUDA ``max_memory_allocated`` over the timed steps; on the CPU the peak resident memory above the
  process's before the configuration was built, sampled every millisecond);
- the FLOPs of one step, counted by ``torch.utils.flop_counter.FlopCounterMode`` (matrix products, convolutions and
  attention, forward and backward, eager; ``every``/``probability`` scale the DiffLoss part by the share of steps that
  apply it; gradient checkpointing's recomputation is not counted: it is not part of the floor);
- ``x floor``: the time over the FLOP floor, i.e. FLOPs divided by the matrix-multiply rate this script measures on
  the device (fp32 for the restorer and VGG, the variant's dtype for the prior; on CUDA fp32 is measured with TF32
  when cuDNN convolutions may use it, the fastest they can run);
- for DiffLoss, the part it adds: ``(ms - l1 ms) / ((FLOPs - l1 FLOPs) / rate)``; the goal is at most 1.5;
- under the table, for each restorer timed with ``default``: its ms over ``default+no_guard``'s (the guard's cost),
  and the mean step of a whole run under ``start_iter: auto`` (the pixel loss alone for the first 40% of the run,
  then the default), ``0.4 x L1 + 0.6 x default``, over L1;
- for a latent prior, ``VAE encoder share``: the time of its VAE encoder in a step (forward and backward on the
  output, forward on the GT, timed alone in the same sweeps) over the DiffLoss part ``ms - l1 ms``.

``--scaling`` instead times L1 and L1+DiffLoss (one restorer, prior and variant) against GT size and batch size,
reports 'OOM' where CUDA runs out of memory, and plots ms/step and peak memory (``--plot``).

    # GPU: the ADM-256 goal, then every prior shape and variant (long: compile variants compile in every sweep)
    python scripts/benchmark.py --device cuda --restorers edsr --priors adm256 --variants bf16 bf16+compile
    python scripts/benchmark.py --device cuda --out benchmark.md --json benchmark.json
    # how the cost grows with GT size and batch
    python scripts/benchmark.py --device cuda --scaling --restorers edsr --priors adm256 --variants bf16 \\
        --plot scaling.png
    # CPU, Stable Diffusion-shaped latent priors at GT 128 (docs/priors.md)
    python scripts/benchmark.py --device cpu --restorers edsr --gt-size 128 --batch 2 --priors sd15 sdxl \
        --variants default --steps 3 --repeats 2
    # CPU: the default's cost and its guard's on three restorers, written into docs/performance.md
    python scripts/benchmark.py --device cpu --restorers edsr swinir iat --priors default --gt-size 64 --batch 4 \
        --variants default default+no_guard --doc docs/performance.md --section cpu-default
    # CPU, tiny shapes (what tests/test_benchmark.py runs), a few seconds
    python scripts/benchmark.py --tiny
    python scripts/benchmark.py --tiny --scaling --plot scaling.png
"""
import argparse
import contextlib
import copy
import ctypes
import dataclasses
import gc
import itertools
import json
import os
import shlex
import statistics
import sys
import tempfile
import threading
import time
from os import path as osp

import torch
import torch.nn.functional as F
import torchvision
from safetensors.torch import save_file
from torch.utils.flop_counter import FlopCounterMode

import basicsr_diffloss  # noqa: F401  (repairs basicsr and registers everything)
import basicsr.archs.vgg_arch as vgg_arch
import diffusers
from basicsr.archs.edsr_arch import EDSR
from basicsr.archs.swinir_arch import SwinIR
from basicsr.losses.basic_loss import PerceptualLoss
from basicsr_diffloss.archs.iat_arch import IAT
from basicsr_diffloss.priors import DiffusionPrior
from basicsr_diffloss.losses import DiffLoss
from basicsr_diffloss.losses.application_schedule import AUTO_START_SHARE
from basicsr_diffloss.losses.diffloss_loss import PRESETS
from basicsr_diffloss.priors import EXECUTION_OPTIONS
from basicsr_diffloss.priors import resolve_dtype
from basicsr_diffloss.priors.guided_diffusion import resolve_flags, unet_config
from doc_sections import cpu_kind, write_doc_section

# DiffLoss and DiffusionPrior options of each named variant. Add a line to benchmark another combination; each names its dtype. All
# but 'score_difference' back-propagate through the UNet (the paper's gradient, the costly one), whatever the preset.
# 'default' is what users get: the default preset, dtype and channels_last 'auto', resolved on the device, timed after
# its strength is measured and after it joined (start_iter 0 here: the steps before start_iter auto cost an L1 step);
# 'default+measuring' times the first strength_iters iterations, which also measure it. The other variants run the
# prior contiguous (channels_last false) unless they say otherwise.
VARIANTS = {
    'default': dict(dtype='auto', channels_last='auto'),
    'default+measuring': dict(dtype='auto', channels_last='auto', strength_iters=10**9),  # the first 50 iterations
    'default+no_guard': dict(dtype='auto', channels_last='auto', max_conflict=False),  # the conflict guard's cost
    'fp32': dict(dtype='fp32', gradient='backprop'),
    'bf16': dict(dtype='bf16', gradient='backprop'),
    'fp16': dict(dtype='fp16', gradient='backprop'),
    'bf16+channels_last': dict(dtype='bf16', gradient='backprop', channels_last=True),
    'bf16+compile': dict(dtype='bf16', gradient='backprop', compile=True),
    'bf16+compile+channels_last': dict(dtype='bf16', gradient='backprop', compile=True, channels_last=True),
    'bf16+checkpointing': dict(dtype='bf16', gradient='backprop', gradient_checkpointing=True),
    'bf16+encoder_only': dict(dtype='bf16', gradient='backprop', eps_weight=0.0, h_weight=1.0),
    'bf16+every4': dict(dtype='bf16', gradient='backprop', every=4),
    'fp32+score_difference': dict(dtype='fp32', gradient='score_difference'),
    'bf16+score_difference': dict(dtype='bf16', gradient='score_difference'),
    'bf16+channels_last+score_difference': dict(dtype='bf16', gradient='score_difference', channels_last=True),
}
TINY_VARIANTS = ['default', 'fp32', 'bf16', 'bf16+channels_last', 'bf16+checkpointing', 'bf16+encoder_only',
                 'bf16+every4', 'bf16+score_difference']
# Options that change how the prior runs (DiffusionPrior's) but not the FLOPs that the method needs (checkpointing's
# recomputation is overhead above the floor), and the schedule options, whose share of applied steps scales the
# DiffLoss FLOPs.
SCHEDULE_OPTIONS = ('every', 'probability')

SCALE = 4
# Each restorer's usual training setting (GT patch side, batch per GPU) and a description for the output.
RESTORERS = {
    'edsr': dict(gt_size=192, batch=16, about='EDSR x4, 64 features, 16 blocks (BasicSR EDSR-M: GT 192, batch 16)'),
    'swinir': dict(gt_size=256, batch=4, about='SwinIR classical x4, embed 180, 6x6 blocks/heads, window 8, '
                   'pixelshuffle (LQ 64 = GT 256, batch 32 over 8 GPUs: 4 per GPU)'),
    'iat': dict(gt_size=256, batch=8, scale=1, about='IAT (low light, 91k parameters; GT 256, batch 8)'),
}
TINY_RESTORER = dict(gt_size=32, batch=2)


def restorer_scale(name):
    """The restorer's output size over its input's."""
    return RESTORERS[name].get('scale', SCALE)

# google/ddpm-ema-church-256's UNet (the diffusers pipeline's unet/config.json); ADM-256 comes from the converter.
DDPM_256 = dict(sample_size=256, in_channels=3, out_channels=3, layers_per_block=2,
                block_out_channels=(128, 128, 256, 256, 512, 512),
                down_block_types=('DownBlock2D', ) * 4 + ('AttnDownBlock2D', 'DownBlock2D'),
                up_block_types=('UpBlock2D', 'AttnUpBlock2D') + ('UpBlock2D', ) * 4)
TINY_PRIOR = dict(sample_size=32, in_channels=3, out_channels=3, block_out_channels=(8, 16), layers_per_block=1,
                  down_block_types=('DownBlock2D', 'AttnDownBlock2D'), up_block_types=('AttnUpBlock2D', 'UpBlock2D'),
                  norm_num_groups=4, attention_head_dim=8)
# Stable Diffusion 1.5's and SDXL base's unet/ and vae/ config.json (the shapes only; random weights), and tiny ones.
SD_VAE = dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512),
              layers_per_block=2, down_block_types=('DownEncoderBlock2D', ) * 4,
              up_block_types=('UpDecoderBlock2D', ) * 4, sample_size=512, scaling_factor=0.18215)
LATENT_PRIORS = {
    'sd15': dict(unet=dict(sample_size=64, in_channels=4, out_channels=4, block_out_channels=(320, 640, 1280, 1280),
                           layers_per_block=2, down_block_types=('CrossAttnDownBlock2D', ) * 3 + ('DownBlock2D', ),
                           up_block_types=('UpBlock2D', ) + ('CrossAttnUpBlock2D', ) * 3, cross_attention_dim=768,
                           attention_head_dim=8),
                 vae=SD_VAE, pipeline='StableDiffusionPipeline', embeds=dict(prompt_embeds=(1, 77, 768))),
    'sdxl': dict(unet=dict(sample_size=128, in_channels=4, out_channels=4, block_out_channels=(320, 640, 1280),
                           layers_per_block=2,
                           down_block_types=('DownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D'),
                           up_block_types=('CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'UpBlock2D'),
                           transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20),
                           cross_attention_dim=2048, use_linear_projection=True, addition_embed_type='text_time',
                           addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816),
                 vae=dict(SD_VAE, sample_size=1024, scaling_factor=0.13025, force_upcast=True),
                 pipeline='StableDiffusionXLPipeline',
                 embeds=dict(prompt_embeds=(1, 77, 2048), pooled_prompt_embeds=(1, 1280))),
    'tiny_sd': dict(unet=dict(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(16, 32),
                              layers_per_block=1, down_block_types=('CrossAttnDownBlock2D', 'DownBlock2D'),
                              up_block_types=('UpBlock2D', 'CrossAttnUpBlock2D'), cross_attention_dim=16,
                              attention_head_dim=4, norm_num_groups=8),
                    vae=dict(SD_VAE, block_out_channels=(8, 16), down_block_types=('DownEncoderBlock2D', ) * 2,
                             up_block_types=('UpDecoderBlock2D', ) * 2, layers_per_block=1, norm_num_groups=8),
                    pipeline='StableDiffusionPipeline', embeds=dict(prompt_embeds=(1, 77, 16))),
}
PRIORS = ('tiny', 'default', 'ddpm256', 'adm256', *LATENT_PRIORS)


@dataclasses.dataclass(frozen=True)
class Configuration:
    """One row: a restorer at a batch and GT size, a loss (``l1``, ``l1+vgg``, ``l1+diffloss``), a prior and a
    DiffLoss variant (DiffLoss only)."""
    restorer: str
    batch: int
    gt_size: int
    loss: str
    prior: str = None
    variant: str = None

    @property
    def name(self):
        return ' '.join(part for part in (self.loss, self.prior, self.variant) if part)

    @property
    def options(self):
        """The DiffLoss options of the variant."""
        return VARIANTS[self.variant] if self.variant else {}

    def prior_dtype(self, device):
        """The prior's dtype on ``device`` ('auto' resolved as DiffusionPrior resolves it); float32 without a prior."""
        return resolve_dtype(self.options['dtype'], device) if self.variant else torch.float32

    @property
    def gradient(self):
        """The gradient mode of a DiffLoss variant: its own, else the default preset's."""
        return self.options.get('gradient', PRESETS['default']['gradient'])

    @property
    def period(self):
        """Steps after which DiffLoss's pattern of applied and skipped steps repeats."""
        return self.options.get('every', 1)

    @property
    def applied_share(self):
        """The expected share of steps that apply the DiffLoss term."""
        return self.options.get('probability', 1.0) / self.period

    def baseline(self, loss):
        """The configuration of the same restorer, batch and size with another loss."""
        return Configuration(self.restorer, self.batch, self.gt_size, loss)


@dataclasses.dataclass
class Environment:
    """What every measurement needs: the device, tiny shapes or not, and the priors built once (CPU, float32)."""
    device: torch.device
    tiny: bool
    priors: dict


def build_latent_prior(name):
    """A DiffusionPrior of the named Stable Diffusion shape, loaded as users load one: a pipeline folder
    (``model_index.json``, ``unet/``, ``vae/``, ``scheduler/``; random weights) with a prompt_embeds file. Held in
    bf16 between configurations (each copy is cast to the variant's dtype at its first call), so that SDXL fits."""
    shape = LATENT_PRIORS[name]
    with tempfile.TemporaryDirectory() as folder:
        for model_class, part in ((diffusers.UNet2DConditionModel, 'unet'), (diffusers.AutoencoderKL, 'vae')):
            model_class(**shape[part]).to(torch.bfloat16).save_pretrained(osp.join(folder, part))  # half the disk
        diffusers.DDPMScheduler(beta_schedule='scaled_linear', beta_start=0.00085, beta_end=0.012).save_pretrained(
            osp.join(folder, 'scheduler'))
        with open(osp.join(folder, 'model_index.json'), 'w') as file:
            json.dump({'_class_name': shape['pipeline'], 'unet': ['diffusers', 'UNet2DConditionModel'],
                       'vae': ['diffusers', 'AutoencoderKL'], 'scheduler': ['diffusers', 'DDPMScheduler']}, file)
        embeds = osp.join(folder, 'prompt_embeds.safetensors')
        save_file({key: torch.randn(size) for key, size in shape['embeds'].items()}, embeds)
        prior = DiffusionPrior(pretrained=folder, prompt_embeds=embeds)
    for part in (prior.unet, prior.encoder):  # nn.Module.to: the schedule and the embeddings stay float32
        torch.nn.Module.to(part, torch.bfloat16)
    return prior


def build_prior(name):
    """A DiffusionPrior of the named shape on the CPU in float32 (random weights except ``default``; latent priors:
    ``build_latent_prior``)."""
    torch.manual_seed(0)
    if name in LATENT_PRIORS:
        return build_latent_prior(name)
    if name == 'tiny':
        return DiffusionPrior(unet=dict(TINY_PRIOR))
    if name == 'default':
        return DiffusionPrior(pretrained='default')
    if name == 'ddpm256':
        return DiffusionPrior(unet=dict(DDPM_256))
    return DiffusionPrior(unet=unet_config(resolve_flags('256x256_diffusion_uncond')))


def parameter_count(module):
    return sum(parameter.numel() for parameter in module.parameters())


def build_restorer(name, tiny, gt_size):
    """BasicSR's EDSR or SwinIR (x4) in their usual settings, or tiny ones; IAT (it has one size)."""
    if name == 'iat':
        return IAT()
    if name == 'edsr':
        return EDSR(3, 3, num_feat=8 if tiny else 64, num_block=1 if tiny else 16, upscale=SCALE, img_range=255.)
    if tiny:
        return SwinIR(upscale=SCALE, img_size=gt_size // SCALE, window_size=4, img_range=1., embed_dim=12, depths=[2],
                      num_heads=[2], mlp_ratio=2, upsampler='pixelshuffle', resi_connection='1conv')
    return SwinIR(upscale=SCALE, img_size=gt_size // SCALE, window_size=8, img_range=1., embed_dim=180,
                  depths=[6] * 6, num_heads=[6] * 6, mlp_ratio=2, upsampler='pixelshuffle', resi_connection='1conv')


@contextlib.contextmanager
def random_vgg_weights():
    """Within the block BasicSR's VGG loads a randomly initialised VGG19 saved in a temporary file (it would download
    ImageNet weights otherwise, and there is no need for trained ones to time it)."""
    original = vgg_arch.VGG_PRETRAIN_PATH
    with tempfile.TemporaryDirectory() as folder:
        torch.manual_seed(0)
        vgg_arch.VGG_PRETRAIN_PATH = osp.join(folder, 'vgg19_random.pth')
        torch.save(torchvision.models.vgg19().state_dict(), vgg_arch.VGG_PRETRAIN_PATH)
        try:
            yield
        finally:
            vgg_arch.VGG_PRETRAIN_PATH = original


def check_variants(names):
    """Build DiffLoss with each variant's options on the tiny prior, so that an option DiffLoss does not take stops the
    run at once with the variant's name rather than after an hour of measurements."""
    prior = build_prior('tiny')
    for name in names:
        if 'dtype' not in VARIANTS[name]:
            raise SystemExit(f"benchmark variant {name!r}: name its 'dtype' (the FLOP floor takes that dtype's rate).")
        try:
            diffloss_with_options(prior, VARIANTS[name])
        except (TypeError, ValueError) as error:
            raise SystemExit(f'benchmark variant {name!r}: DiffLoss does not take its options {VARIANTS[name]}: '
                             f'{error}') from error


def diffloss_with_options(prior, options, **fixed):
    """DiffLoss on ``prior`` with a variant's options: those of EXECUTION_OPTIONS set on the prior, the rest given to
    the loss; every other option keeps the package default, but for ``channels_last``, false unless named,
    ``strength_iters``, 1 where the preset's strength sets the eps weight: its measurement (an extra gradient of each
    term, over the first 50 applications in training) then happens in the first warm-up step, and ``start_iter``, 0:
    the timed steps are the steady state with the term on."""
    prior.set_execution(**{'channels_last': False,
                           **{key: value for key, value in options.items() if key in EXECUTION_OPTIONS}})
    loss_options = {key: value for key, value in options.items() if key not in EXECUTION_OPTIONS}
    if 'eps_weight' not in loss_options:
        loss_options.setdefault('strength_iters', 1)
    loss_options.setdefault('start_iter', 0)
    return DiffLoss(prior=prior, **fixed, **loss_options)


def build_total_loss(config, env, options, parameters):
    """The step's loss as a function ``(output, gt, l1) -> scalar``: L1 plus the configuration's extra term. DiffLoss
    gets the restorer's ``parameters`` and the L1 term as a model's training step gives them (its conflict guard works
    on them, and the L1 term comes back among its terms)."""
    if config.loss == 'l1+vgg':
        perceptual = PerceptualLoss({'conv5_4': 1.0}, vgg_type='vgg19', perceptual_weight=1.0, style_weight=0.)
        perceptual = perceptual.to(env.device)
        return lambda output, gt, pixel: pixel + perceptual(output, gt)[0]
    if config.loss == 'l1+diffloss':
        prior = copy.deepcopy(env.priors[config.prior]).to(env.device)
        diffloss = diffloss_with_options(prior, options, seed=0)
        calls = itertools.count(1)
        return lambda output, gt, pixel: sum(diffloss.terms(output, gt, next(calls), pixel, parameters,
                                                            reference_name='l_pix').values())
    return lambda output, gt, pixel: pixel


def build_step(config, env, options=None):
    """A fresh training step of ``config`` as a function of no arguments: restorer forward, L1 plus the extra loss,
    backward, Adam. ``options`` replaces the variant's DiffLoss options."""
    torch.manual_seed(0)
    network = build_restorer(config.restorer, env.tiny, config.gt_size).to(env.device)
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-4)
    gt = torch.rand(config.batch, 3, config.gt_size, config.gt_size, device=env.device)
    scale = restorer_scale(config.restorer)
    lq = 0.2 * gt if scale == 1 else F.interpolate(gt, scale_factor=1 / scale, mode='bicubic',
                                                      antialias=True).clamp(0, 1)
    total_loss = build_total_loss(config, env, config.options if options is None else options,
                                  [param for param in network.parameters() if param.requires_grad])

    def step():
        output = network(lq)
        loss = total_loss(output, gt, F.l1_loss(output, gt))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def synchronize(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def free_memory(device):
    """Drop the previous configuration's tensors and compiled code before the next one is built (on the CPU, the
    C allocator also returns freed memory to the system, so that the next peak RSS starts from what is in use)."""
    torch._dynamo.reset()
    gc.collect()
    if device.type == 'cuda':
        torch.cuda.empty_cache()
    elif sys.platform.startswith('linux'):
        ctypes.CDLL('libc.so.6').malloc_trim(0)


class PeakResidentMemory:
    """Within the block, samples the process's resident memory (Linux /proc/self/statm) every millisecond; ``peak``
    is its maximum above the resident memory at entry, in bytes (the CPU's counterpart of CUDA's peak counter)."""

    def __enter__(self):
        self.page = os.sysconf('SC_PAGE_SIZE')
        self.start = self.peak_rss = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _rss(self):
        with open('/proc/self/statm') as f:
            return int(f.read().split()[1]) * self.page

    def _sample(self):
        while not self._stop.wait(0.001):
            self.peak_rss = max(self.peak_rss, self._rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak_rss = max(self.peak_rss, self._rss())
        self.peak = self.peak_rss - self.start


def round_up(count, period):
    return -(-count // period) * period


def time_configuration(config, env, warmup, steps):
    """``(ms per step, peak GiB over the timed steps)`` of a freshly built ``config``; ms None when CUDA ran out of
    memory. Peak: CUDA's ``max_memory_allocated``; on the CPU the peak resident memory above the process's before
    the configuration was built (its weights, optimizer state and step activations)."""
    free_memory(env.device)
    try:
        with PeakResidentMemory() as resident:
            step = build_step(config, env)
            for _ in range(round_up(warmup, config.period)):
                step()
            synchronize(env.device)
            if env.device.type == 'cuda':
                torch.cuda.reset_peak_memory_stats(env.device)
            steps = round_up(steps, config.period)
            start = time.perf_counter()
            for _ in range(steps):
                step()
            synchronize(env.device)
            milliseconds = (time.perf_counter() - start) * 1000 / steps
    except torch.cuda.OutOfMemoryError:
        return None, None
    peak = torch.cuda.max_memory_allocated(env.device) if env.device.type == 'cuda' else resident.peak
    return milliseconds, peak / 2**30


def time_round_robin(configs, env, args):
    """``{config: (median ms or None for OOM, peak GiB or None)}`` over ``args.repeats`` sweeps of all ``configs``."""
    times = {config: [] for config in configs}
    peaks = {config: [] for config in configs}
    for sweep in range(args.repeats):
        for config in configs:
            if sweep and not times[config]:
                continue  # it ran out of memory in the first sweep
            compiled = config.options.get('compile', False)
            ms, peak = time_configuration(config, env, args.warmup + (args.compile_warmup if compiled else 0),
                                          args.steps)
            if ms is not None:
                times[config].append(ms)
                peaks[config].append(peak)
            print(f'sweep {sweep + 1}/{args.repeats} {config.restorer} {config.batch}x{config.gt_size}^2 '
                  f"{config.name}: {'OOM' if ms is None else f'{ms:.1f} ms'}", file=sys.stderr, flush=True)
    free_memory(env.device)
    return {config: (statistics.median(times[config]) if times[config] else None,
                     None if None in peaks[config] or not peaks[config] else max(peaks[config]))
            for config in configs}


def time_latent_encoder(config, env, warmup, steps):
    """ms of a latent prior's VAE encoder in one DiffLoss application of ``config`` (the whole GT patch, as the
    DiffLoss of ``build_extra_loss`` takes it): forward and backward on an output, forward on a GT."""
    free_memory(env.device)
    prior = copy.deepcopy(env.priors[config.prior]).to(env.device)
    loss = diffloss_with_options(prior, config.options, seed=0)  # the variant's execution options, as in the step
    output = torch.rand(config.batch, 3, config.gt_size, config.gt_size, device=env.device, requires_grad=True)
    gt = torch.rand(config.batch, 3, config.gt_size, config.gt_size, device=env.device)

    def encode():
        prior.to_input(gt, loss.input_range)
        prior.to_input(output, loss.input_range).square().mean().backward()

    for _ in range(warmup):
        encode()
    synchronize(env.device)
    start = time.perf_counter()
    for _ in range(steps):
        encode()
    synchronize(env.device)
    return (time.perf_counter() - start) * 1000 / steps


def encoder_times(configs, env, args):
    """``{config: median ms of its VAE encoder}`` for the DiffLoss configurations with a latent prior."""
    latent = [config for config in configs if config.prior in LATENT_PRIORS]
    times = {config: [] for config in latent}
    for _ in range(args.repeats):
        for config in latent:
            times[config].append(time_latent_encoder(config, env, args.warmup, args.steps))
    free_memory(env.device)
    return {config: statistics.median(values) for config, values in times.items()}


def counted_flops(config, env):
    """FLOPs of one eager step of ``config`` that applies the DiffLoss term, without checkpointing's recomputation."""
    options = {key: value for key, value in config.options.items() if key not in SCHEDULE_OPTIONS}
    options.update(compile=False, gradient_checkpointing=False)
    step = build_step(config, env, options if config.loss == 'l1+diffloss' else None)
    step()  # the first applies the strength measurement (see diffloss_with_options), not part of a step's cost
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def flops_per_step(configs, env):
    """``{config: mean FLOPs per step}``. Variants that differ only in execution options share one count. The l1
    configuration of each restorer must run (it is the baseline of the DiffLoss part)."""
    counts = {}

    def count(config):
        kept = tuple(sorted((key, value) for key, value in config.options.items()
                            if key not in EXECUTION_OPTIONS + SCHEDULE_OPTIONS))
        key = (config.restorer, config.batch, config.gt_size, config.loss, config.prior, kept)
        if key not in counts:
            free_memory(env.device)
            counts[key] = counted_flops(config, env)
        return counts[key]

    flops = {}
    for config in configs:
        flops[config] = count(config)
        if config.loss == 'l1+diffloss':
            l1_flops = count(config.baseline('l1'))
            flops[config] = l1_flops + config.applied_share * (flops[config] - l1_flops)
    free_memory(env.device)
    return flops


def rate_name(dtype, device):
    """The dtype's name, marked (TF32) where its rate is measured with TF32 matmuls (see ``matmul_rate``)."""
    name = str(dtype).replace('torch.', '')
    tf32 = device.type == 'cuda' and dtype == torch.float32 and torch.backends.cudnn.allow_tf32
    return name + ' (TF32)' if tf32 else name


def matmul_rate(device, dtype, size):
    """Measured rate (FLOP/s) of a ``size``-square matrix product in ``dtype``. For float32 on CUDA with cuDNN's TF32
    convolutions allowed (PyTorch's default), with TF32 matmuls: the fastest that float32 convolutions run."""
    precision = torch.get_float32_matmul_precision()
    if rate_name(dtype, device).endswith('(TF32)'):
        torch.set_float32_matmul_precision('high')
    try:
        a, b = (torch.randn(size, size, device=device).to(dtype) for _ in range(2))
        for _ in range(3):
            a @ b
        synchronize(device)
        repeats, start = 0, time.perf_counter()
        while repeats < 3 or time.perf_counter() - start < 0.5:
            a @ b
            repeats += 1
        synchronize(device)
        return 2 * size**3 * repeats / (time.perf_counter() - start)
    finally:
        torch.set_float32_matmul_precision(precision)


def ratio(numerator, denominator):
    return None if numerator is None or denominator is None else numerator / denominator


def report_rows(configs, timings, flops, rates, env, encoders):
    """One dict per configuration: times, memory, FLOPs and the ratios (and a latent prior's VAE encoder share of the
    DiffLoss part), ready for the table and for JSON. A configuration that ran out of memory has ms, FLOPs and
    ratios None."""
    rows = []
    for config in configs:
        ms, peak = timings[config]
        l1, vgg = config.baseline('l1'), config.baseline('l1+vgg')
        prior = env.priors.get(config.prior)
        row = dict(restorer=config.restorer, batch=config.batch, gt_size=config.gt_size, loss=config.loss,
                   prior=config.prior, variant=config.variant, name=config.name, ms=ms, peak_gib=peak,
                   flops=flops.get(config), prior_parameters=parameter_count(prior) if prior is not None else 0,
                   x_l1=ratio(ms, timings[l1][0]), x_vgg=ratio(ms, timings[vgg][0]))
        if config.loss == 'l1+diffloss':
            row.update(gradient=config.gradient, dtype=str(config.prior_dtype(env.device)).replace('torch.', ''))
        if ms is not None:
            added_flops = flops[config] - flops[l1]
            prior_rate = rates[config.prior_dtype(env.device)]
            row['x_floor'] = ms / 1000 / (flops[l1] / rates[torch.float32] + added_flops / prior_rate)
            if config.loss == 'l1+diffloss':
                row['diffloss_x_floor'] = (ms - timings[l1][0]) / 1000 / (added_flops / prior_rate)
            if config in encoders:
                row.update(encoder_ms=encoders[config], encoder_share=encoders[config] / (ms - timings[l1][0]))
        rows.append(row)
    return rows


def whole_run_lines(rows):
    """For each restorer timed with the ``default`` variant, its step over the ``default+no_guard`` one (the guard's
    cost) where both ran, and its mean step over a whole run with ``start_iter: auto`` (L1 steps until the term
    joins, then default steps) over an L1 step, as markdown lines."""
    lines = []
    for row in rows:
        if row['variant'] != 'default' or row['x_l1'] is None:
            continue
        unguarded = next((other for other in rows if other['variant'] == 'default+no_guard' and other['ms']
                          and (other['restorer'], other['prior']) == (row['restorer'], row['prior'])), None)
        guard = f"{row['ms'] / unguarded['ms']:.2f}x its step without the guard; " if unguarded else ''
        mean = AUTO_START_SHARE + (1 - AUTO_START_SHARE) * row['x_l1']
        lines.append(f"- {row['restorer']}, {row['prior']} prior: the default is {guard}a whole run with start_iter "
                     f'auto (L1 alone for the first {AUTO_START_SHARE:.0%}) averages {mean:.2f}x an L1 step.')
    return '\n' + '\n'.join(lines) + '\n' if lines else ''


def cell(value, spec='.2f'):
    return 'n/a' if value is None else format(value, spec)


def markdown_table(rows):
    """The main table, one line per row of ``report_rows``."""
    lines = ['| restorer | batch x GT | loss | prior | prior params | variant | gradient | prior dtype | ms/step | x L1 '
             '| x L1+VGG | peak GiB | GFLOP/step | x floor | DiffLoss part x its floor | VAE encoder share |',
             '|---' * 16 + '|']
    for row in rows:
        cells = [row['restorer'], f"{row['batch']} x {row['gt_size']}^2", row['loss'], row['prior'] or '',
                 f"{row['prior_parameters'] / 1e6:.3g}M" if row['prior'] else '', row['variant'] or '',
                 row.get('gradient', ''), row.get('dtype', ''),
                 'OOM' if row['ms'] is None else cell(row['ms'], '.1f'), cell(row['x_l1']), cell(row['x_vgg']),
                 cell(row['peak_gib']), cell(ratio(row['flops'], 1e9), '.4g'), cell(row.get('x_floor')),
                 cell(row.get('diffloss_x_floor')), cell(row.get('encoder_share')) if 'encoder_ms' in row else '']
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def device_name(device):
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    return f'{cpu_kind()}, {torch.get_num_threads()} threads'


def header(args, argv, env, restorers, rates=None):
    """Markdown lines: the device, versions, restorer settings, timing settings, measured rates and the command."""
    lines = [f'Device: {device_name(env.device)}; torch {torch.__version__}; diffusers {diffusers.__version__}.']
    if env.device.type == 'cuda':
        lines.append(f'cuDNN benchmark on (as in BasicSR training); TF32 convolutions '
                     f"{'on' if torch.backends.cudnn.allow_tf32 else 'off'}; float32 matmul precision "
                     f'{torch.get_float32_matmul_precision()}.')
    if rates:
        measured = ', '.join(f'{rate_name(dtype, env.device)} {rate / 1e12:.3g}' for dtype, rate in rates.items())
        lines.append(f'Measured matmul rate ({args.matmul_size}^2, TFLOP/s): {measured}.')
    about = '; '.join('tiny ' + name if env.tiny else RESTORERS[name]['about'] for name in restorers)
    lines.append(f'Restorers: {about}. Warm-up {args.warmup} steps (+{args.compile_warmup} with compile), '
                 f'{args.steps} timed steps, median of {args.repeats} sweeps.')
    lines.append(f"Command: `python {osp.relpath(__file__)} {shlex.join(argv)}` ({time.strftime('%Y-%m-%d')})")
    return '\n'.join(lines)


def comparison_configs(args):
    """The rows of the main table: per restorer, L1, L1+VGG and L1+DiffLoss for each prior and variant."""
    configs = []
    for name in args.restorers:
        usual = TINY_RESTORER if args.tiny else RESTORERS[name]
        batch, gt_size = args.batch or usual['batch'], args.gt_size or usual['gt_size']
        configs += [Configuration(name, batch, gt_size, 'l1'), Configuration(name, batch, gt_size, 'l1+vgg')]
        configs += [Configuration(name, batch, gt_size, 'l1+diffloss', prior, variant)
                    for prior in args.priors for variant in args.variants]
    return configs


def compare(args, argv, env):
    """The main table: every configuration's time, memory, FLOPs and ratios. Returns (markdown, JSON-ready dict)."""
    configs = comparison_configs(args)
    with random_vgg_weights():
        timings = time_round_robin(configs, env, args)
        encoders = encoder_times([config for config in configs if timings[config][0] is not None], env, args)
        flops = flops_per_step([config for config in configs if timings[config][0] is not None], env)
    dtypes = dict.fromkeys([torch.float32] + [config.prior_dtype(env.device) for config in configs])
    rates = {dtype: matmul_rate(env.device, dtype, args.matmul_size) for dtype in dtypes}
    rows = report_rows(configs, timings, flops, rates, env, encoders)
    markdown = (header(args, argv, env, args.restorers, rates) + '\n\n' + markdown_table(rows) + '\n' +
                whole_run_lines(rows))
    record = dict(device=device_name(env.device), torch=torch.__version__, command=argv,
                  matmul_tflops={rate_name(dtype, env.device): rate / 1e12 for dtype, rate in rates.items()},
                  rows=rows)
    return markdown, record


def scaling_configs(args):
    """``{'size': [...], 'batch': [...]}``: L1 and L1+DiffLoss against GT size (batch fixed) and batch (size fixed)."""
    restorer, prior, variant = args.restorers[0], args.priors[0], args.variants[0]
    fixed_batch = args.batch or (TINY_RESTORER['batch'] if args.tiny else 4)
    fixed_size = args.gt_size or (TINY_RESTORER['gt_size'] if args.tiny else 256)
    points = {'size': [(fixed_batch, size) for size in args.sizes],
              'batch': [(batch, fixed_size) for batch in args.batches]}
    return {axis: [config for batch, size in pairs
                   for config in (Configuration(restorer, batch, size, 'l1'),
                                  Configuration(restorer, batch, size, 'l1+diffloss', prior, variant))]
            for axis, pairs in points.items()}


def plot_scaling(curves, path, title):
    """ms/step (top) and peak memory (bottom) against GT size (left) and batch (right), one line per loss."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    figure, axes = plt.subplots(2, 2, figsize=(10, 7), sharex='col')
    for column, axis in enumerate(('size', 'batch')):
        key = 'gt_size' if axis == 'size' else 'batch'
        for loss in ('l1', 'l1+diffloss'):
            points = [row for row in curves[axis] if row['loss'] == loss]
            ran = [row for row in points if row['ms'] is not None]
            oom = [row[key] for row in points if row['ms'] is None]
            label = loss + (f' (OOM at {oom})' if oom else '')
            axes[0][column].plot([row[key] for row in ran], [row['ms'] for row in ran], 'o-', label=label)
            if ran and all(row['peak_gib'] is not None for row in ran):
                axes[1][column].plot([row[key] for row in ran], [row['peak_gib'] for row in ran], 'o-', label=label)
        ticks = sorted({row[key] for row in curves[axis]})
        for row, unit in enumerate(('ms / step', 'peak GiB (CUDA max allocated; CPU resident)')):
            panel = axes[row][column]
            panel.set_xlabel('GT side (px)' if axis == 'size' else 'batch size')
            panel.set_ylabel(unit)
            panel.set_xscale('log', base=2)
            panel.set_xticks(ticks, [str(tick) for tick in ticks])
            panel.grid(alpha=0.3)
            if panel.lines:
                panel.legend()
            else:
                panel.text(0.5, 0.5, 'n/a on the CPU', ha='center', transform=panel.transAxes)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def scaling(args, argv, env):
    """The scaling tables (and the plot). Returns (markdown, JSON-ready dict)."""
    curves = scaling_configs(args)
    configs = list(dict.fromkeys(config for axis in curves.values() for config in axis))
    timings = time_round_robin(configs, env, args)
    record = dict(device=device_name(env.device), torch=torch.__version__, command=argv)
    restorer, prior, variant = args.restorers[0], args.priors[0], args.variants[0]
    sweeps = (f"By size at batch {curves['size'][0].batch}, by batch at GT {curves['batch'][0].gt_size}: L1 and "
              f'L1+DiffLoss with prior {prior} ({parameter_count(env.priors[prior]) / 1e6:.3g}M), variant {variant}.')
    sections = [header(args, argv, env, [restorer]) + '\n' + sweeps]
    for axis, axis_configs in curves.items():
        rows = []
        for config in axis_configs:
            ms, peak = timings[config]
            rows.append(dict(restorer=config.restorer, batch=config.batch, gt_size=config.gt_size, loss=config.loss,
                             name=config.name, ms=ms, peak_gib=peak,
                             x_l1=ratio(ms, timings[config.baseline('l1')][0])))
        record[axis] = rows
        lines = [f'By {axis}:', '', '| batch x GT | loss | ms/step | x L1 | peak GiB |', '|---' * 5 + '|']
        lines += [f"| {row['batch']} x {row['gt_size']}^2 | {row['name']} | "
                  f"{'OOM' if row['ms'] is None else cell(row['ms'], '.1f')} | {cell(row['x_l1'])} | "
                  f"{cell(row['peak_gib'])} |" for row in rows]
        sections.append('\n'.join(lines))
    plot_scaling(record, args.plot, f'{restorer}: L1 and L1+DiffLoss (prior {prior}, {variant}) on '
                 f'{device_name(env.device)}; torch {torch.__version__}')
    return '\n\n'.join(sections) + '\n', record


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--device', default=None, help='cpu or cuda (default: cuda if available; cpu with --tiny)')
    parser.add_argument('--tiny', action='store_true', help='tiny restorers and prior, a few steps: a CPU check')
    parser.add_argument('--restorers', nargs='+', default=list(RESTORERS), choices=list(RESTORERS), metavar='NAME',
                        help=f"{', '.join(RESTORERS)} (default: all)")
    parser.add_argument('--priors', nargs='+', choices=PRIORS, metavar='NAME',
                        help=f"prior shapes: {', '.join(PRIORS)} (default: all but tiny; with --tiny: tiny)")
    parser.add_argument('--variants', nargs='+', choices=list(VARIANTS), metavar='NAME',
                        help=f"DiffLoss variants: {', '.join(VARIANTS)} (default: all; with --tiny: "
                        f"{', '.join(TINY_VARIANTS)})")
    parser.add_argument('--batch', type=int, help="batch size (default: each restorer's usual)")
    parser.add_argument('--gt-size', type=int, help="GT patch side (default: each restorer's usual)")
    parser.add_argument('--warmup', type=int, help='warm-up steps (default: 3; tiny: 1)')
    parser.add_argument('--compile-warmup', type=int, help='extra warm-up steps with compile (default: 5; tiny: 1)')
    parser.add_argument('--steps', type=int, help='timed steps (default: 10; tiny: 2)')
    parser.add_argument('--repeats', type=int, help='round-robin sweeps, median taken (default: 3; tiny: 1)')
    parser.add_argument('--matmul-size', type=int, help='matrix side for the rate (default: 8192 CUDA, 2048 CPU, '
                        '256 tiny)')
    parser.add_argument('--out', help='also write the markdown here')
    parser.add_argument('--json', help='also write the measurements here')
    parser.add_argument('--doc', help='also write the markdown into this doc, between its --section markers')
    parser.add_argument('--section', help="with --doc: the name in its '<!-- benchmark:NAME -->' markers")
    parser.add_argument('--scaling', action='store_true',
                        help='time L1 and L1+DiffLoss (first restorer, prior and variant) against size and batch')
    parser.add_argument('--sizes', nargs='+', type=int, help='GT sides for --scaling (default: 128 256 512)')
    parser.add_argument('--batches', nargs='+', type=int, help='batch sizes for --scaling (default: 1 2 4 8 16)')
    parser.add_argument('--plot', help='the --scaling plot (PNG)')
    args = parser.parse_args(argv)
    if args.scaling and not args.plot:
        parser.error('--scaling needs --plot FILE.png')
    if bool(args.doc) != bool(args.section):
        parser.error('--doc and --section go together')
    tiny = args.tiny
    args.device = args.device or ('cuda' if torch.cuda.is_available() and not tiny else 'cpu')
    args.priors = args.priors or (['tiny'] if tiny else ['default', 'ddpm256', 'adm256'])
    args.variants = args.variants or (TINY_VARIANTS if tiny else list(VARIANTS))
    defaults = dict(warmup=(1, 3), compile_warmup=(1, 5), steps=(2, 10), repeats=(1, 3),
                    sizes=([16, 32], [128, 256, 512]), batches=([1, 2], [1, 2, 4, 8, 16]),
                    matmul_size=(256, 8192 if args.device.startswith('cuda') else 2048))
    for name, (tiny_value, value) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, tiny_value if tiny else value)
    return args


def main(argv=None):
    """Run the benchmark; returns the JSON-ready record of what was measured."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    check_variants(args.variants)
    device = torch.device(args.device)
    if device.type == 'cuda':
        torch.backends.cudnn.benchmark = True
    env = Environment(device, args.tiny, {name: build_prior(name) for name in args.priors})
    markdown, record = (scaling if args.scaling else compare)(args, argv, env)
    print(markdown)
    if args.out:
        with open(args.out, 'w') as file:
            file.write(markdown)
    if args.json:
        with open(args.json, 'w') as file:
            json.dump(record, file, indent=1)
    if args.doc:
        write_doc_section(args.doc, f'benchmark:{args.section}', markdown)
    return record


if __name__ == '__main__':
    main()
