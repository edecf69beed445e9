"""Low-light sweep: IAT trained with L1 alone and with L1 + DiffLoss as a new user would, on several syntheses.

Issue 34: DiffLoss's default kept a dead colour channel dead on low-light sets darkened through a tone curve. This
sweep trains IAT (the paper's low-light backbone) the way a user's option file would (Adam lr 2e-4, betas (0.9,
0.999), cosine to 1e-6, seed 0, DiffLoss through the package's own pixel-loss slot with the training length known)
on ``CONFIGS``: five syntheses (``RECIPES``: tone curves in sRGB and in linear light at two strengths, exposure alone
in linear light, exposure with a white-balance error and JPEG) crossed with batch 4/8, patch 48/64, DiffLoss
``crop_size`` none/32 and weight decay 0/4e-4. It validates on photos of other sources than the training photos
(their long side reduced to ``--val_long_side``) and reports PSNR (RGB, 8-bit) and the mean of each output channel,
which shows a dead channel.

    # one lane per core; each writes <output>/<config>/<setting>.json
    OMP_NUM_THREADS=1 python scripts/low_light_sweep.py --settings l1 default --configs 0 2 4 ... --output DIR &
    python scripts/low_light_sweep.py --report DIR [--before DIR_BEFORE] [--doc docs/study.md]   # the table
    python scripts/low_light_sweep.py --report DIR --trace 9 [--doc docs/study.md]   # red over training, config 9

``default`` is DiffLoss with the package's defaults (``prior: default``) and the config's ``crop_size``: whatever
the checked-out code's default is. ``default_at_once`` is the same with the term from the first step and no
back-off (``start_iter: 0``, ``backoff_margin: false``): the rules of the 2026-12-04 default in this code. A table
made with ``--before`` shows the default of another checkout (its records) beside this one's, with L1 from the first
folder that has it. Every run also records the mean red (0-255) of its outputs on a fixed probe batch (16 training
crops of 64 px, darkened by the config's recipe) every ``TRACE_EVERY`` iterations: ``--trace`` tables it, which shows
when a dead channel revives.
"""
import argparse
import json
import os
import sys
import time
from os import path as osp
from types import SimpleNamespace

import cv2
import numpy as np
import torch

import basicsr_diffloss  # noqa: F401  (repairs basicsr and registers everything)
from basicsr.losses.basic_loss import L1Loss
from basicsr.metrics import calculate_psnr
from basicsr_diffloss.archs.iat_arch import IAT
from basicsr_diffloss.losses import DiffLoss
from basicsr_diffloss.models.diffloss_model import PixelAndDiffusionLoss
from doc_sections import cpu_kind, write_doc_section
from study.data import load_photos, split_photos, training_batches


def srgb_to_linear(image):
    return torch.where(image <= 0.04045, image / 12.92, ((image + 0.055) / 1.055)**2.4)


def linear_to_srgb(image):
    image = image.clamp(0, 1)
    return torch.where(image <= 0.0031308, image * 12.92, 1.055 * image**(1 / 2.4) - 0.055)


class Recipe:
    """A low-light synthesis: ``gain * x ** gamma`` (in sRGB, or in linear light when ``linear``), a per-channel
    ``cast``, Poisson-Gaussian noise (``shot`` 0-255 levels per photon, ``read`` std in 0-255), optionally JPEG
    (quality range ``jpeg``), then 8-bit. Every range is drawn per image (the cast per channel)."""

    def __init__(self, gain, gamma=(1.0, 1.0), linear=False, cast=(0.85, 1.15), shot=(0.5, 2.0), read=(1.0, 3.0),
                 jpeg=None):
        self.gain, self.gamma, self.linear, self.cast = gain, gamma, linear, cast
        self.shot, self.read, self.jpeg = shot, read, jpeg

    def __repr__(self):
        space = 'linear light' if self.linear else 'sRGB'
        jpeg = f', JPEG q{self.jpeg[0]}-{self.jpeg[1]}' if self.jpeg else ''
        return (f'gain {self.gain[0]}-{self.gain[1]} x x^({self.gamma[0]}-{self.gamma[1]}) in {space}, cast '
                f'{self.cast[0]}-{self.cast[1]}{jpeg}')

    def __call__(self, gt, generator):
        def draw(bounds, shape):
            return bounds[0] + (bounds[1] - bounds[0]) * torch.rand(shape, generator=generator)

        batch = gt.shape[0]
        image = srgb_to_linear(gt) if self.linear else gt
        dark = draw(self.gain, (batch, 1, 1, 1)) * image.clamp(0, 1)**draw(self.gamma, (batch, 1, 1, 1))
        dark = dark * draw(self.cast, (batch, 3, 1, 1))
        if self.linear:
            dark = linear_to_srgb(dark)
        variance = dark * draw(self.shot, (batch, 1, 1, 1)) / 255 + (draw(self.read, (batch, 1, 1, 1)) / 255)**2
        dark = (dark + variance.sqrt() * torch.randn(gt.shape, generator=generator)).clamp(0, 1)
        dark = (dark * 255).round() / 255
        if self.jpeg is None:
            return dark
        return torch.stack([self._jpeg(image, int(draw(self.jpeg, ()))) for image in dark])

    @staticmethod
    def _jpeg(image, quality):
        pixels = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        _, encoded = cv2.imencode('.jpg', pixels, [cv2.IMWRITE_JPEG_QUALITY, quality])
        return torch.from_numpy(cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED).astype(np.float32) / 255).permute(2, 0, 1)


RECIPES = {
    # the study's low-light task, 8-bit: the set on which the default kept the red channel dead (issue 34)
    'srgb_curve': Recipe(gain=(0.08, 0.35), gamma=(1.6, 2.8)),
    'srgb_curve_strong': Recipe(gain=(0.05, 0.2), gamma=(2.2, 3.5)),
    'linear_curve': Recipe(gain=(0.1, 0.4), gamma=(1.3, 2.0), linear=True),
    'linear_exposure': Recipe(gain=(0.02, 0.1), linear=True),  # about as dark as srgb_curve
    'exposure_wb_jpeg': Recipe(gain=(0.03, 0.15), linear=True, cast=(0.7, 1.3), jpeg=(60, 90)),
}
# recipe, batch, GT patch, DiffLoss crop_size, Adam weight decay
CONFIGS = [
    ('srgb_curve', 8, 64, None, 4e-4),
    ('srgb_curve', 8, 64, 32, 4e-4),
    ('srgb_curve', 4, 48, None, 0),
    ('srgb_curve_strong', 8, 64, None, 4e-4),
    ('srgb_curve_strong', 4, 64, None, 0),
    ('linear_curve', 8, 64, None, 4e-4),
    ('linear_curve', 4, 48, 32, 0),
    ('linear_curve', 8, 48, None, 0),
    ('linear_exposure', 8, 64, None, 4e-4),
    ('linear_exposure', 4, 48, None, 0),
    ('exposure_wb_jpeg', 8, 64, None, 4e-4),
    ('exposure_wb_jpeg', 4, 48, 32, 4e-4),
]
SETTINGS = ('l1', 'default', 'default_at_once')
TRACE_EVERY = 20  # iterations between two probes of the outputs' red


def config_name(index):
    recipe, batch, patch, crop_size, weight_decay = CONFIGS[index]
    return f'{index:02d}_{recipe}_b{batch}_p{patch}_crop{crop_size or "none"}_wd{weight_decay:g}'


def validation_photos(folders, long_side):
    """The photos of ``folders``, their long side reduced to ``long_side``."""
    photos = {name: image for folder in folders for name, image in load_photos(folder, 1).items()}
    out = {}
    for name, image in photos.items():
        factor = long_side / max(image.shape[:2])
        if factor < 1:
            image = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        out[name] = image
    return out


def train_and_evaluate(args, index, setting, train_photos, val_pairs, probe):
    recipe, batch, patch, crop_size, weight_decay = CONFIGS[index]
    torch.manual_seed(args.seed)
    restorer = IAT(in_dim=3, with_global=True, type='lol')
    parameters = [param for param in restorer.parameters() if param.requires_grad]
    optimizer = torch.optim.Adam(parameters, lr=args.lr, betas=(0.9, 0.999), weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, args.iters, eta_min=1e-6)
    criterion = L1Loss()
    if setting != 'l1':
        at_once = dict(start_iter=0, backoff_margin=False) if setting == 'default_at_once' else {}
        diffloss = DiffLoss(prior=dict(type='DiffusionPrior', pretrained='default'), crop_size=crop_size,
                            seed=args.seed, **at_once)
        if hasattr(diffloss, 'set_training_length'):  # the code since issue 34 (the model calls it)
            diffloss.set_training_length(args.iters)
        criterion = PixelAndDiffusionLoss(criterion, diffloss, parameters)
    # the study's random patches and flips, darkened by the recipe
    data = training_batches(train_photos, SimpleNamespace(gt_patch=patch, degrade=RECIPES[recipe]), batch, args.seed)
    log, red_trace, start = [], [], time.perf_counter()
    for iteration in range(1, args.iters + 1):
        lq, gt = next(data)
        if setting != 'l1':
            criterion.current_iter = iteration
        loss = criterion(restorer(lq), gt)
        terms = criterion.pop_terms()[0] if setting != 'l1' else {'l_pix': loss}
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if iteration % 50 == 0:
            log.append(dict(iter=iteration, **{name: round(value.item(), 5) for name, value in terms.items()}))
        if iteration % TRACE_EVERY == 0:
            red_trace.append([iteration, probe_red(restorer, probe[0])])
    seconds = time.perf_counter() - start
    restorer.eval()
    psnr, means = {}, []
    with torch.no_grad():
        for name, (lq, gt) in val_pairs.items():
            output = (restorer(lq)[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255).round()
            psnr[name] = calculate_psnr(output, gt, 0)
            means.append(output.reshape(-1, 3).mean(0))
    return dict(config=config_name(index), setting=setting, iters=args.iters, seed=args.seed, lr=args.lr,
                seconds=seconds,
                psnr=psnr, mean_psnr=float(np.mean(list(psnr.values()))),
                channel_means_rgb=[round(float(value), 1) for value in np.mean(means, 0)], log=log,
                red_trace=red_trace, probe_gt_red=round(255 * probe[1][:, 0].mean().item(), 1))


def probe_red(restorer, probe):
    """The mean red (0-255) of ``restorer``'s outputs on ``probe`` (in eval mode, so its batch norms keep the
    training batches' statistics)."""
    restorer.eval()
    with torch.no_grad():
        red = 255 * restorer(probe)[:, 0].clamp(0, 1).mean().item()
    restorer.train()
    return round(red, 1)


def run(args):
    train_photos, _ = split_photos(load_photos(args.photos, 0.5))
    val_pairs = {}
    for name, image in validation_photos(args.val_photos, args.val_long_side).items():
        if name in train_photos:
            continue
        gt = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
        val_pairs[name] = None, gt
    for index in args.configs:
        recipe = RECIPES[CONFIGS[index][0]]
        generator = torch.Generator().manual_seed(1234 + index)  # the same pairs whichever configs a lane runs
        pairs = {name: (recipe(gt, generator), (gt[0].permute(1, 2, 0).numpy() * 255).round())
                 for name, (_, gt) in sorted(val_pairs.items())}
        probe = next(training_batches(train_photos, SimpleNamespace(gt_patch=64, degrade=recipe), 16, 777 + index))
        for setting in args.settings:
            path = osp.join(args.output, config_name(index), f'{setting}.json')
            if osp.isfile(path):
                continue
            record = train_and_evaluate(args, index, setting, train_photos, pairs, probe)
            os.makedirs(osp.dirname(path), exist_ok=True)
            with open(path, 'w') as handle:
                json.dump(record, handle, indent=1)
            print(f"{record['config']} {setting}: {record['mean_psnr']:.2f} dB, RGB means "
                  f"{record['channel_means_rgb']}, {record['seconds']:.0f} s", flush=True)


def load(folder):
    records = {}
    for config in sorted(os.listdir(folder)) if osp.isdir(folder) else []:
        for name in sorted(os.listdir(osp.join(folder, config))):
            with open(osp.join(folder, config, name)) as handle:
                record = json.load(handle)
            records[config, record['setting']] = record
    return records


def run_settings(records):
    """The (iterations, seed, learning rate) of ``records``; refuses records made with different ones, which one table
    must not compare."""
    made = {(record['iters'], record['seed'], record.get('lr', 'not recorded')) for record in records}
    if len(made) > 1:
        raise SystemExit('low_light_sweep --report: the records were made with different (iterations, seed, lr): '
                         f'{sorted(made, key=str)}; report each run in its own --output folder.')
    return made.pop()


def report(args):
    after = load(args.report)
    before = load(args.before) if args.before else {}
    iters, seed, lr = run_settings([*after.values(), *before.values()])
    configs = sorted({config for config, _ in after} | {config for config, _ in before})

    def cell(record, l1):
        if record is None:
            return 'not run', ''
        red = record['channel_means_rgb'][0]
        return (f"{record['mean_psnr']:.2f} ({record['mean_psnr'] - l1['mean_psnr']:+.2f})" if l1 else
                f"{record['mean_psnr']:.2f}"), f'{red:.0f}'

    header = '| config | L1 PSNR | red (L1) |'
    columns = [('before', before, 'default')] if before else []  # (column name, records, setting)
    columns += [(setting if not before or setting != 'default' else 'after', after, setting)
                for setting in SETTINGS[1:] if any(key[1] == setting for key in after)]
    header += ''.join(f' {name} PSNR (vs L1) | red ({name}) |' for name, _, _ in columns)
    lines = [header, '|' + '---|' * (3 + 2 * len(columns))]
    for config in configs:
        l1 = after.get((config, 'l1')) or before.get((config, 'l1'))
        row = f"| {config} | {l1['mean_psnr']:.2f} | {l1['channel_means_rgb'][0]:.0f} |" if l1 else f'| {config} | | |'
        for _, records, setting in columns:
            psnr, red = cell(records.get((config, setting)), l1)
            row += f' {psnr} | {red} |'
        lines.append(row)
    recipes = '; '.join(f'`{name}`: {recipe}' for name, recipe in RECIPES.items())
    header = [f"Written by `python scripts/low_light_sweep.py {' '.join(sys.argv[1:])}` on {time.strftime('%Y-%m-%d')}, "
              f"from runs on {cpu_kind()}: IAT, {iters} iterations, seed {seed}, "
              f'Adam lr {lr if isinstance(lr, str) else np.format_float_scientific(lr, trim="-", exp_digits=1)} '
              '(cosine to 1e-6), validated on photos of other sources (long side 512); PSNR (RGB, '
              '8-bit) of L1 alone and of L1 + DiffLoss, and the mean red of the outputs (0-255). Recipes (each then '
              'Poisson-Gaussian noise and 8-bit): '
              f'{recipes}.', '']
    markdown = '\n'.join(header + lines)
    print(markdown)
    if args.doc:
        write_doc_section(args.doc, args.section or 'low-light-sweep', markdown)


def trace_report(args):
    """The mean red on the probe batch over training, one column per setting, for config ``args.trace``."""
    records = {setting: record for (config, setting), record in load(args.report).items()
               if config == config_name(args.trace) and record.get('red_trace')}
    if not records:
        raise SystemExit(f'{args.report}: no run of config {config_name(args.trace)} with a red trace (runs since '
                         'the trace was added record one).')
    iters, seed, _ = run_settings(records.values())
    traces = {setting: dict(record['red_trace']) for setting, record in records.items()}
    iterations = sorted(set().union(*traces.values()))
    first = next(iter(records.values()))
    lines = [f"Written by `python scripts/low_light_sweep.py {' '.join(sys.argv[1:])}` on {time.strftime('%Y-%m-%d')}, "
             f"from runs on {cpu_kind()}: config `{config_name(args.trace)}`, IAT, {iters} iterations, "
             f"seed {seed}; the mean red (0-255) of the outputs on 16 training crops of 64 px darkened by "
             f"the config's recipe, every {TRACE_EVERY} iterations (the ground truth's: "
             f"{first.get('probe_gt_red', 'not recorded')}).", '',
             '| iteration | ' + ' | '.join(traces) + ' |', '|---|' + '---|' * len(traces)]
    lines += [f'| {iteration} | ' + ' | '.join(f'{trace[iteration]:.0f}' if iteration in trace else ''
                                               for trace in traces.values()) + ' |' for iteration in iterations]
    markdown = '\n'.join(lines)
    print(markdown)
    if args.doc:
        write_doc_section(args.doc, args.section or 'low-light-red-trace', markdown)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--settings', nargs='+', default=list(SETTINGS), choices=SETTINGS)
    parser.add_argument('--configs', nargs='+', type=int, default=list(range(len(CONFIGS))))
    parser.add_argument('--iters', type=int, default=400)
    parser.add_argument('--lr', type=float, default=2e-4)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--photos', default=osp.join('..', 'shared', 'data', 'photos'),
                        help='training photos: the study split\'s training part (study/data.py)')
    parser.add_argument('--val_photos', nargs='+',
                        default=[osp.join('datasets', 'prior_photos_v2', split) for split in ('confirm', 'val')],
                        help='validation photo folders, of other sources than the training photos and the default '
                        "prior's (scripts/fetch_license_checked_photos.py writes these)")
    parser.add_argument('--val_long_side', type=int, default=512)
    parser.add_argument('--output', default=osp.join('results', 'low_light_sweep'))
    parser.add_argument('--report', help='print the table of the records in this folder')
    parser.add_argument('--before', help='with --report: the records of another checkout, shown beside')
    parser.add_argument('--trace', type=int, help="with --report: instead, config TRACE's red over training")
    parser.add_argument('--doc', help="with --report: also write the table into this doc, between its "
                        "'<!-- low-light-sweep -->' markers (with --trace: '<!-- low-light-red-trace -->')")
    parser.add_argument('--section', help="with --doc: the markers' name instead (e.g. low-light-sweep-1500)")
    args = parser.parse_args()
    if args.section and not args.doc:
        parser.error('--section names where --doc writes: it goes with --doc FILE.')
    for name in ('before', 'trace', 'doc'):
        if getattr(args, name) is not None and not args.report:
            parser.error(f'--{name} reads finished runs: it goes with --report DIR (training writes no table).')
    if args.before and args.trace is not None:
        parser.error('--before goes with the sweep table, not with --trace (the trace reads one folder).')
    if args.report and args.trace is not None:
        trace_report(args)
    elif args.report:
        report(args)
    else:
        run(args)


if __name__ == '__main__':
    main()
