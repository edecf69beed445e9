"""What DiffLoss costs: ms per full training step, peak memory, and the FLOP floor, side by side in one run.

A step is the restorer's forward, the loss, the backward pass and an Adam step. Configurations:
- restorers: EDSR (x4, 64 features, 16 blocks, GT 192, batch 16: BasicSR's EDSR-M setting) and SwinIR (classical x4:
  embed 180, depths and heads 6 x 6, window 8, GT 192, batch 4 per GPU);
- losses: ``l1``; ``l1+vgg`` (BasicSR PerceptualLoss, VGG19 conv5_4, random weights: none can be downloaded);
  ``l1+diffloss`` with a prior shape: ``default`` (the shipped 4.3M prior), ``ddpm256`` (google/ddpm-*-256 UNet shape,
  114M) or ``adm256`` (guided-diffusion 256x256_diffusion_uncond shape, 552M), random weights, under each variant of
  ``VARIANTS`` (DiffLoss speed options).

For each configuration it prints ms/step (median over ``--repeats`` sweeps), the ratio to ``l1`` and to ``l1+vgg``
of the same restorer in the same run, peak memory (CUDA only: the CPU has no per-configuration peak counter, so
'n/a'), the FLOPs of one step counted by ``torch.utils.flop_counter.FlopCounterMode`` (matrix multiplies and
convolutions, forward and backward), and the ratio of the time to its FLOP floor: FLOPs divided by a matrix-multiply
rate this script measures on the device in the dtype that runs them. For DiffLoss it also gives the part DiffLoss
adds: ``(ms - l1 ms) / ((FLOPs - l1 FLOPs) / rate)``, the goal being at most 1.5.

    # GPU (docs/performance.md): the ADM-256 goal, then every prior shape
    python scripts/benchmark.py --device cuda --restorers edsr --priors adm256 --gt-size 256 --batch 4
    python scripts/benchmark.py --device cuda --restorers edsr swinir --priors default ddpm256 adm256
    # how the cost grows with image size and batch (plot)
    python scripts/benchmark.py --device cuda --scaling --priors adm256 --variants bf16 --plot docs/images/scaling.png
    # CPU, tiny shapes (what CI runs)
    python scripts/benchmark.py --tiny
"""
import argparse
import copy
import gc
import json
import os
import statistics
import sys
import tempfile
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import basicsr_diffloss  # noqa: F401  (repairs basicsr and registers everything)
import basicsr.archs.vgg_arch as vgg_arch
import torchvision
from basicsr.archs.edsr_arch import EDSR
from basicsr.archs.swinir_arch import SwinIR
from basicsr.losses.basic_loss import PerceptualLoss
from basicsr_diffloss.archs import DiffusionPrior
from basicsr_diffloss.losses import DiffLoss
from basicsr_diffloss.losses.diffloss_loss import DTYPES
from basicsr_diffloss.priors.guided_diffusion import resolve_flags, unet_config

# DiffLoss speed options, by name. Add a line to benchmark another combination.
VARIANTS = {
    'fp32': dict(dtype='fp32'),
    'bf16': dict(dtype='bf16'),
    'fp16': dict(dtype='fp16'),
    'bf16+channels_last': dict(dtype='bf16', channels_last=True),
    'bf16+compile': dict(dtype='bf16', compile=True),
    'bf16+compile+channels_last': dict(dtype='bf16', compile=True, channels_last=True),
    'bf16+checkpointing': dict(dtype='bf16', gradient_checkpointing=True),
    'bf16+encoder_only': dict(dtype='bf16', eps_weight=0.0, h_weight=1.0),
    'bf16+every4': dict(dtype='bf16', every=4),
    'bf16+score_difference': dict(dtype='bf16', gradient='score_difference'),
}
DEFAULT_VARIANTS = ['fp32', 'bf16', 'fp16', 'bf16+channels_last', 'bf16+compile', 'bf16+compile+channels_last',
                    'bf16+checkpointing', 'bf16+encoder_only', 'bf16+every4', 'bf16+score_difference']
TINY_VARIANTS = ['fp32', 'bf16', 'bf16+encoder_only', 'bf16+every4', 'bf16+score_difference']

# google/ddpm-ema-church-256's UNet (config.json of the diffusers pipeline); ADM-256 comes from the converter's preset.
DDPM_256 = dict(sample_size=256, in_channels=3, out_channels=3, layers_per_block=2,
                block_out_channels=(128, 128, 256, 256, 512, 512),
                down_block_types=('DownBlock2D', ) * 4 + ('AttnDownBlock2D', 'DownBlock2D'),
                up_block_types=('UpBlock2D', 'AttnUpBlock2D') + ('UpBlock2D', ) * 4)
TINY_PRIOR = dict(sample_size=32, in_channels=3, out_channels=3, block_out_channels=(8, 16), layers_per_block=1,
                  down_block_types=('DownBlock2D', 'AttnDownBlock2D'), up_block_types=('AttnUpBlock2D', 'UpBlock2D'),
                  norm_num_groups=4, attention_head_dim=8)


def prior_unet(name):
    """A DiffusionPrior of the named shape (random weights except ``default``), on the CPU in float32."""
    torch.manual_seed(0)
    if name == 'tiny':
        return DiffusionPrior(unet=dict(TINY_PRIOR))
    if name == 'default':
        return DiffusionPrior(pretrained='default')
    if name == 'ddpm256':
        return DiffusionPrior(unet=dict(DDPM_256))
    if name == 'adm256':
        return DiffusionPrior(unet=unet_config(resolve_flags('256x256_diffusion_uncond')))
    raise ValueError(f"--priors: '{name}' is not one of tiny, default, ddpm256, adm256.")


def restorer(name, tiny):
    """``(network, scale)``: BasicSR's EDSR or SwinIR in their usual x4 settings, or tiny ones."""
    if name == 'edsr':
        width, blocks = (8, 1) if tiny else (64, 16)
        return EDSR(3, 3, num_feat=width, num_block=blocks, upscale=4, res_scale=1, img_range=255.), 4
    if name == 'swinir':
        if tiny:
            return SwinIR(upscale=4, img_size=8, window_size=4, embed_dim=12, depths=[1], num_heads=[2], mlp_ratio=2,
                          upsampler='pixelshuffle', resi_connection='1conv'), 4
        return SwinIR(upscale=4, img_size=48, window_size=8, img_range=1., embed_dim=180, depths=[6] * 6,
                      num_heads=[6] * 6, mlp_ratio=2, upsampler='pixelshuffle', resi_connection='1conv'), 4
    raise ValueError(f"--restorers: '{name}' is not one of edsr, swinir.")


USUAL_BATCH = {'edsr': 16, 'swinir': 4}


def perceptual_loss(device):
    """BasicSR's VGG19 perceptual loss with random weights (BasicSR would download ImageNet weights otherwise)."""
    path = os.path.join(tempfile.gettempdir(), 'benchmark_vgg19_random.pth')
    if not os.path.exists(path):
        torch.manual_seed(0)
        torch.save(torchvision.models.vgg19(weights=None).state_dict(), path)
    vgg_arch.VGG_PRETRAIN_PATH = path
    return PerceptualLoss({'conv5_4': 1.0}, vgg_type='vgg19', perceptual_weight=1.0, style_weight=0.).to(device)


class Configuration:
    """One row: a restorer, a loss (``l1``, ``l1+vgg`` or ``l1+diffloss``), and for DiffLoss a prior and a variant."""

    def __init__(self, restorer_name, loss, prior=None, variant=None, gt_size=192, batch=16):
        self.restorer_name, self.loss, self.prior, self.variant = restorer_name, loss, prior, variant
        self.gt_size, self.batch = gt_size, batch
        self.label = loss if loss != 'l1+diffloss' else f'l1+diffloss {prior} {variant}'

    @property
    def options(self):
        return VARIANTS[self.variant] if self.variant else {}

    @property
    def compute_dtype(self):
        return DTYPES[self.options.get('dtype', 'fp32')]

    @property
    def period(self):
        """Steps after which the sequence of applied and skipped DiffLoss terms repeats."""
        return self.options.get('every', 1)


def build_step(config, device, priors, tiny, eager=False):
    """A function that runs one training step of ``config``, and the prior's parameter count."""
    torch.manual_seed(0)
    network, scale = restorer(config.restorer_name, tiny)
    network = network.to(device)
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-4)
    gt = torch.rand(config.batch, 3, config.gt_size, config.gt_size, device=device)
    lq = F.interpolate(gt, scale_factor=1 / scale, mode='bicubic', antialias=True).clamp(0, 1)
    extra, prior_parameters = None, 0
    if config.loss == 'l1+vgg':
        extra = perceptual_loss(device)
    elif config.loss == 'l1+diffloss':
        prior = copy.deepcopy(priors[config.prior]).to(device)
        prior_parameters = sum(parameter.numel() for parameter in prior.parameters())
        options = dict(config.options, compile=False) if eager else dict(config.options)
        extra = DiffLoss(prior=prior, seed=0, **options)

    def step():
        output = network(lq)
        loss = F.l1_loss(output, gt)
        if extra is not None:
            extra_loss = extra(output, gt)
            loss = loss + (extra_loss[0] if isinstance(extra_loss, tuple) else extra_loss)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step, prior_parameters


def synchronize(device):
    if device.type == 'cuda':
        torch.cuda.synchronize()


def step_flops(config, device, priors, tiny):
    """FLOPs of one step (averaged over the variant's period), counted on an eager copy."""
    step, _ = build_step(config, device, priors, tiny, eager=True)
    with FlopCounterMode(display=False) as counter:
        for _ in range(config.period):
            step()
    return counter.get_total_flops() / config.period


def matmul_rate(device, dtype, size):
    """Measured multiply-add rate (FLOP/s) of a square matrix product in ``dtype`` on ``device``."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    for _ in range(2):
        a @ b
    synchronize(device)
    repeats, start = 0, time.perf_counter()
    while repeats < 3 or time.perf_counter() - start < 0.5:
        a @ b
        repeats += 1
    synchronize(device)
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def time_configuration(config, device, priors, tiny, warmup, steps):
    """``(ms per step, peak GiB or None, prior parameters)`` of one configuration, built, timed and freed."""
    if device.type == 'cuda':
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    try:
        step, prior_parameters = build_step(config, device, priors, tiny)
        steps = max(steps // config.period, 1) * config.period
        for _ in range(warmup * config.period):
            step()
        synchronize(device)
        start = time.perf_counter()
        for _ in range(steps):
            step()
        synchronize(device)
        milliseconds = (time.perf_counter() - start) * 1000 / steps
    except torch.OutOfMemoryError:
        return None, None, None
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == 'cuda' else None
    return milliseconds, peak, prior_parameters


def configurations(args):
    rows = []
    for name in args.restorers:
        batch = args.batch or (2 if args.tiny else USUAL_BATCH[name])
        gt_size = args.gt_size or (32 if args.tiny else 192)
        rows += [Configuration(name, 'l1', gt_size=gt_size, batch=batch),
                 Configuration(name, 'l1+vgg', gt_size=gt_size, batch=batch)]
        rows += [Configuration(name, 'l1+diffloss', prior, variant, gt_size, batch)
                 for prior in args.priors for variant in args.variants]
    return rows


def measure(args, rows, device, priors):
    """Time every row ``--repeats`` times (whole sweeps, so that drift hits all rows alike); count FLOPs once."""
    warmup = args.warmup
    times = {row.label + row.restorer_name: [] for row in rows}
    results = {}
    for _ in range(args.repeats):
        for row in rows:
            compiled = row.options.get('compile', False)
            ms, peak, parameters = time_configuration(row, device, priors, args.tiny,
                                                      warmup + (args.compile_warmup if compiled else 0), args.steps)
            times[row.label + row.restorer_name].append(ms)
            results[row.label + row.restorer_name] = dict(peak_gib=peak, prior_parameters=parameters)
    rates = {}
    for row in rows:
        key = row.label + row.restorer_name
        measured = [value for value in times[key] if value is not None]
        results[key]['ms'] = statistics.median(measured) if measured else None
        results[key]['flops'] = step_flops(row, device, priors, args.tiny) if measured else None
        if row.compute_dtype not in rates:
            rates[row.compute_dtype] = matmul_rate(device, row.compute_dtype, args.matmul_size)
    return results, rates


def table(args, rows, results, rates, device):
    """The markdown table (and a JSON-ready list of rows)."""
    fp32_rate = rates[torch.float32]
    lines = ['| restorer | batch x GT | loss | prior params | ms/step | x L1 | x L1+VGG | peak GiB | GFLOP/step | '
             'x floor | DiffLoss part x its floor |', '|---' * 11 + '|']
    records = []
    for row in rows:
        result = results[row.label + row.restorer_name]
        l1 = results['l1' + row.restorer_name]
        vgg = results['l1+vgg' + row.restorer_name]
        ms, flops = result['ms'], result['flops']
        record = dict(restorer=row.restorer_name, batch=row.batch, gt_size=row.gt_size, loss=row.label,
                      prior_parameters=result['prior_parameters'], ms=ms, peak_gib=result['peak_gib'], flops=flops)
        if ms is not None:
            extra_flops = flops - l1['flops']
            floor = l1['flops'] / fp32_rate + extra_flops / rates[row.compute_dtype]
            record.update(x_l1=ms / l1['ms'], x_vgg=ms / vgg['ms'], x_floor=ms / 1000 / floor)
            if row.loss == 'l1+diffloss':
                record['diffloss_x_floor'] = (ms - l1['ms']) / 1000 / (extra_flops / rates[row.compute_dtype])
        records.append(record)

        def cell(key, digits):
            value = record.get(key)
            return 'n/a' if value is None else f'{value:.{digits}f}'

        oom = ms is None
        lines.append(
            f"| {row.restorer_name} | {row.batch} x {row.gt_size}^2 | {row.label} | "
            f"{(result['prior_parameters'] or 0) / 1e6:.3g}M | {'OOM' if oom else cell('ms', 1)} | {cell('x_l1', 2)} | "
            f"{cell('x_vgg', 2)} | {cell('peak_gib', 1)} | "
            f"{'n/a' if flops is None else f'{flops / 1e9:.4g}'} | {cell('x_floor', 2)} | "
            f"{cell('diffloss_x_floor', 2)} |")
    name = torch.cuda.get_device_name() if device.type == 'cuda' else f'CPU ({torch.get_num_threads()} threads)'
    rate_text = ', '.join(f'{str(dtype).split(".")[-1]} {rate / 1e12:.2f}' for dtype, rate in rates.items())
    header = [f'Device: {name}; torch {torch.__version__}; measured matmul rate (TFLOP/s, {args.matmul_size}^2): '
              f'{rate_text}.', f"Command: `python {' '.join(sys.argv)}`", '']
    return '\n'.join(header + lines) + '\n', records


def scaling(args, device, priors):
    """ms/step and peak memory of L1 and L1+DiffLoss against GT size (batch fixed) and batch (size fixed)."""
    variant = args.variants[0]
    restorer_name = args.restorers[0]
    sweeps = {'size': [(size, args.batch or 4) for size in args.sizes],
              'batch': [(args.gt_size or (32 if args.tiny else 256), batch) for batch in args.batches]}
    curves = {}
    for axis, points in sweeps.items():
        for loss in ('l1', 'l1+diffloss'):
            values = []
            for size, batch in points:
                config = Configuration(restorer_name, loss, args.priors[0], variant if loss != 'l1' else None,
                                       size, batch)
                compiled = config.options.get('compile', False)
                ms, peak, _ = time_configuration(config, device, priors, args.tiny,
                                                 args.warmup + (args.compile_warmup if compiled else 0), args.steps)
                values.append(dict(size=size, batch=batch, ms=ms, peak_gib=peak))
                print(f'{axis}: {loss} batch {batch} x {size}^2: ' + ('OOM' if ms is None else f'{ms:.1f} ms'),
                      flush=True)
            curves[f'{axis} {loss}'] = values
    return curves


def plot_scaling(curves, path, title):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    figure, axes = plt.subplots(2, 2, figsize=(10, 7))
    for column, axis_name in enumerate(('size', 'batch')):
        for loss in ('l1', 'l1+diffloss'):
            points = [point for point in curves[f'{axis_name} {loss}'] if point['ms'] is not None]
            xs = [point[axis_name] for point in points]
            axes[0][column].plot(xs, [point['ms'] for point in points], 'o-', label=loss)
            if all(point['peak_gib'] is not None for point in points):
                axes[1][column].plot(xs, [point['peak_gib'] for point in points], 'o-', label=loss)
        for row, unit in enumerate(('ms / step', 'peak GiB (CUDA only)')):
            axes[row][column].set_xlabel('GT side (px)' if axis_name == 'size' else 'batch size')
            axes[row][column].set_ylabel(unit)
            axes[row][column].set_xscale('log', base=2)
            axes[row][column].legend()
            axes[row][column].grid(alpha=0.3)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--tiny', action='store_true', help='tiny shapes for a CPU check (CI)')
    parser.add_argument('--restorers', nargs='+', default=['edsr', 'swinir'], choices=['edsr', 'swinir'])
    parser.add_argument('--priors', nargs='+', default=None, choices=['tiny', 'default', 'ddpm256', 'adm256'],
                        help='prior shapes (default: default ddpm256 adm256; with --tiny: tiny, 2 levels)')
    parser.add_argument('--variants', nargs='+', default=None, choices=list(VARIANTS),
                        help='DiffLoss variants (default: all; with --tiny: a fast subset)')
    parser.add_argument('--batch', type=int, default=None, help='batch size (default: the restorer\'s usual)')
    parser.add_argument('--gt-size', type=int, default=None, help='GT patch side (default: 192; tiny: 32)')
    parser.add_argument('--warmup', type=int, default=None, help='warm-up steps (default: 3; tiny: 1)')
    parser.add_argument('--compile-warmup', type=int, default=5, help='extra warm-up steps when compiling')
    parser.add_argument('--steps', type=int, default=None, help='timed steps (default: 10; tiny: 2)')
    parser.add_argument('--repeats', type=int, default=None, help='sweeps, median taken (default: 3; tiny: 1)')
    parser.add_argument('--matmul-size', type=int, default=None, help='matmul side for the rate (default: 8192 '
                        'on CUDA, 1024 on CPU, 256 tiny)')
    parser.add_argument('--out', help='also write the markdown table here')
    parser.add_argument('--json', help='also write the rows as JSON here')
    parser.add_argument('--scaling', action='store_true', help='sweep GT size and batch instead; needs --plot')
    parser.add_argument('--sizes', nargs='+', type=int, default=None, help='GT sides (default: 128 256 512)')
    parser.add_argument('--batches', nargs='+', type=int, default=None, help='batch sizes (default: 1 2 4 8 16)')
    parser.add_argument('--plot', help='the scaling plot (PNG)')
    args = parser.parse_args(argv)
    args.priors = args.priors or (['tiny'] if args.tiny else ['default', 'ddpm256', 'adm256'])
    args.variants = args.variants or (TINY_VARIANTS if args.tiny else DEFAULT_VARIANTS)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.tiny else 3)
    args.steps = args.steps or (2 if args.tiny else 10)
    args.repeats = args.repeats or (1 if args.tiny else 3)
    args.matmul_size = args.matmul_size or (256 if args.tiny else 8192 if args.device == 'cuda' else 1024)
    args.sizes = args.sizes or ([16, 32] if args.tiny else [128, 256, 512])
    args.batches = args.batches or ([1, 2] if args.tiny else [1, 2, 4, 8, 16])
    if args.scaling and not args.plot:
        parser.error('--scaling needs --plot FILE.png')
    return args


def main(argv=None):
    args = parse_args(argv)
    device = torch.device(args.device)
    priors = {name: prior_unet(name) for name in args.priors}
    if args.scaling:
        curves = scaling(args, device, priors)
        plot_scaling(curves, args.plot, f'{args.restorers[0]} + prior {args.priors[0]} ({args.variants[0]}) on '
                     f'{device.type}; torch {torch.__version__}')
        if args.json:
            with open(args.json, 'w') as file:
                json.dump(curves, file, indent=1)
        return curves
    rows = configurations(args)
    results, rates = measure(args, rows, device, priors)
    markdown, records = table(args, rows, results, rates, device)
    print(markdown)
    if args.out:
        with open(args.out, 'w') as file:
            file.write(markdown)
    if args.json:
        with open(args.json, 'w') as file:
            json.dump(records, file, indent=1)
    return records


if __name__ == '__main__':
    main()
