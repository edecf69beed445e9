"""The DiffLoss study: which settings change restorations, compared with baselines that cost nothing.

For each task (x4 SR, sigma-25 colour denoising, low light, haze, rain: study.data.Task), setting
(study.settings.SETTINGS) and seed, it trains a small restorer (EDSR, IAT for low light, NAFNet for haze and rain)
from the same initialisation on the same batches (both fixed by the seed), evaluates it on the
fixed validation photos (study.data.VALIDATION_PHOTOS, the whole half-resolution photos, or their central
--val_size crops), and writes ``runs/<task>/<setting>_s<seed>.json`` (per-image METRICS: PSNR and SSIM on RGB and
on Y, NIQE, HaarPSI, GMSD, CIEDE2000; ms/step; the calibrated weight; the loss log) and the restored images. Runs
whose JSON exists are not repeated, so several processes can share the work and a stopped study can go on. Then it
writes ``study.md``: for every setting the metric means and the paired per-image differences against L1 with their
standard error, win counts and per-seed means, and grids of the crops where each setting differs most from L1. A
run recorded before a metric joined METRICS gets it then, from its saved outputs.

    python scripts/run_study.py --tasks sr4 dn25 --seeds 0 1 --iters 3000 --output results/study
    python scripts/run_study.py --report_only --output results/study

Every extra term is calibrated to a fixed ratio of the pixel loss's gradient (see settings.py). Use
``OMP_NUM_THREADS`` to share a machine between processes.
"""
import argparse
import json
import math
import os
import re
import sys
import time
from os import path as osp

import cv2
import torch

import basicsr_diffloss  # noqa: F401  (repairs basicsr and registers everything)
from basicsr.archs.edsr_arch import EDSR
from basicsr.metrics import calculate_psnr, calculate_ssim
from basicsr_diffloss.archs.iat_arch import IAT
from basicsr_diffloss.archs.nafnet_arch import NAFNet
from basicsr_diffloss.priors import DiffusionPrior
from basicsr_diffloss.metrics import calculate_ciede2000, calculate_gmsd, calculate_haarpsi, calculate_niqe_or_nan, lower_is_better
from basicsr_diffloss.report.grid import choose_crops, save_grid
from doc_sections import cpu_kind, write_doc_section
from study.data import TASKS, Task, load_photos, save_rgb, split_photos, training_batches, validation_pairs
from study.settings import SETTINGS, StudyLoss
from study.statistics import metric_means, paired_difference

SPLIT_SUFFIX = {'tuning': '', 'confirmation': '_confirmation'}  # folder suffixes of each validation split
# Per-image metrics of uint8 BGR images: name -> function(output, gt, crop_border).
METRIC_FUNCTIONS = dict(
    psnr=calculate_psnr, psnr_y=lambda output, gt, border: calculate_psnr(output, gt, border, test_y_channel=True),
    ssim=calculate_ssim, ssim_y=lambda output, gt, border: calculate_ssim(output, gt, border, test_y_channel=True),
    niqe=lambda output, gt, border: float(calculate_niqe_or_nan(output, border)), haarpsi=calculate_haarpsi,
    gmsd=calculate_gmsd, ciede2000=calculate_ciede2000)
METRICS = tuple(METRIC_FUNCTIONS)
BASELINE = 'l1'


def images_folder(output, kind, task, split):
    """The folder of a split's shared ``kind`` images ('gt' or 'lq')."""
    return osp.join(output, kind, task + SPLIT_SUFFIX[split])


def outputs_folder(output, task, setting, seed, split):
    """The folder of one run's restored images of a split."""
    return osp.join(output, 'outputs', task, f'{setting}_s{seed}{SPLIT_SUFFIX[split]}')


def write_record(path, record):
    """Write a run's record whole or not at all: a record on disk means a finished run (its outputs written)."""
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path + '.partial', 'w') as file:
        json.dump(record, file, indent=1)
    os.replace(path + '.partial', path)


# The NAFNet of the haze and rain tasks (the paper's backbone for both): NAFNet's four levels, one block each.
SMALL_NAFNET = dict(img_channel=3, width=16, middle_blk_num=1, enc_blk_nums=[1, 1, 1, 1], dec_blk_nums=[1, 1, 1, 1])


def build_restorer(task, num_feat, num_block):
    """IAT for low light (the paper's low-light backbone, 91k parameters); a small NAFNet (``SMALL_NAFNET``) for haze
    and rain; else EDSR (BasicSR) at the task's scale: x4 for SR, x1 (no upsampler) for denoising."""
    if task.name == 'll':
        return IAT(in_dim=3, with_global=True, type='lol')
    if task.name in ('haze', 'rain'):
        return NAFNet(**SMALL_NAFNET)
    return EDSR(num_in_ch=3, num_out_ch=3, num_feat=num_feat, num_block=num_block, upscale=task.scale,
                res_scale=1, img_range=1.0)


def image_metrics(output, gt, crop_border, names=METRICS):
    """Per-image metrics ``names`` of uint8 BGR images."""
    return {name: METRIC_FUNCTIONS[name](output, gt, crop_border) for name in names}


def train_and_evaluate(args, task, name, seed, train_photos, splits, prior):
    """One run; returns its record (also written as JSON by the caller). ``splits``: ``{split: (pairs,
    references)}``, the validation pairs and their uint8 GT images of the tuning split (``metrics``) and, with
    --confirm_photos, the confirmation split (``confirmation_metrics``)."""
    torch.manual_seed(seed)
    restorer = build_restorer(task, args.num_feat, args.num_block)
    loss = StudyLoss(SETTINGS[name], prior=prior, seed=seed, t_range=args.t_range, crop_size=args.crop_size,
                     total_iter=args.iters)
    calibration = training_batches(train_photos, task, args.batch, seed + 1000)
    weight = loss.calibrate([next(calibration) for _ in range(4)], task)
    optimizer = torch.optim.Adam(restorer.parameters(), lr=args.lr, betas=(0.9, 0.99))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, args.iters, eta_min=args.lr / 100)
    batches = training_batches(train_photos, task, args.batch, seed)
    parameters = [param for param in restorer.parameters() if param.requires_grad]
    log, start = [], time.perf_counter()
    for iteration in range(1, args.iters + 1):
        lq, gt = next(batches)
        terms = loss.terms(restorer(lq), gt, iteration, parameters)
        optimizer.zero_grad(set_to_none=True)
        sum(terms.values()).backward()
        optimizer.step()
        scheduler.step()
        if iteration % args.log_every == 0 or iteration == args.iters:
            guard = loss.diffloss.guard.last if loss.diffloss is not None and loss.diffloss.guard else {}
            log.append(dict(iter=iteration, **{key: round(value.item(), 6) for key, value in terms.items()},
                            **{key: round(value, 4) for key, value in guard.items()}))
    ms_per_step = (time.perf_counter() - start) * 1000 / args.iters
    restorer.eval()
    metrics = {}
    with torch.no_grad():
        for split, (pairs, references) in splits.items():
            metrics[split] = {}
            for image_name, (lq, _) in pairs.items():
                output = save_rgb(osp.join(outputs_folder(args.output, task.name, name, seed, split),
                                           f'{image_name}.png'), restorer(lq))
                metrics[split][image_name] = image_metrics(output, references[image_name], task.crop_border)
    setting = SETTINGS[name]
    ratio = setting['diffusion']['strength']['eps'] if loss.relative else loss.ratio  # None: no term, or absolute
    return dict(task=task.name, setting=name, seed=seed, iters=args.iters,
                weight=weight if weight is not None else loss.strength_weights, ratio=ratio,
                strength='DiffLoss strength (live batches)' if loss.relative else 'study calibration (start outputs)',
                prior=args.split_prior if setting.get('prior') == 'split' else args.prior, crop_size=args.crop_size,
                ms_per_step=ms_per_step, log=log, metrics=metrics['tuning'],
                confirmation_metrics=metrics.get('confirmation'),
                restorer=dict(type=type(restorer).__name__, num_feat=args.num_feat, num_block=args.num_block,
                              nafnet=SMALL_NAFNET if isinstance(restorer, NAFNet) else None,
                              batch=args.batch, patch=task.gt_patch, lr=args.lr))


def run_all(args):
    train_photos, validation_photos = split_photos(load_photos(args.photos, args.photo_scale))
    priors = {'default': DiffusionPrior(pretrained=args.prior)}
    if any(SETTINGS[name].get('prior') == 'split' for name in args.settings):
        if not args.split_prior:
            raise SystemExit('--split_prior is required by the settings '
                             f"{[name for name in args.settings if SETTINGS[name].get('prior') == 'split']}: the prior "
                             'trained on the study split (options/train/prior/train_study_split_prior.yml).')
        priors['split'] = DiffusionPrior(pretrained=args.split_prior)
    photo_sets = {'tuning': validation_photos}
    if args.confirm_photos:  # at native resolution, from other sources: the choices never saw them
        photo_sets['confirmation'] = load_photos(args.confirm_photos, 1.0)
    for task_name in args.tasks:
        task = Task(task_name, args.patch)
        splits = {}
        for split, photos in photo_sets.items():
            pairs = validation_pairs(photos, task, args.val_size if split == 'tuning' else None)
            references = {}
            for image_name, (lq, gt) in pairs.items():
                save_rgb(osp.join(images_folder(args.output, 'lq', task.name, split), f'{image_name}.png'), lq)
                references[image_name] = save_rgb(
                    osp.join(images_folder(args.output, 'gt', task.name, split), f'{image_name}.png'), gt)
            splits[split] = (pairs, references)
        for seed in args.seeds:
            for name in args.settings:
                record_path = osp.join(args.output, 'runs', task.name, f'{name}_s{seed}.json')
                if osp.exists(record_path):
                    continue
                started = time.time()
                prior = priors[SETTINGS[name].get('prior', 'default')]
                record = train_and_evaluate(args, task, name, seed, train_photos, splits, prior)
                record['wall_s'] = time.time() - started
                write_record(record_path, record)
                print(f"{task.name} {name} seed {seed}: {record['ms_per_step']:.0f} ms/step, "
                      f"PSNR-Y {sum(m['psnr_y'] for m in record['metrics'].values()) / len(record['metrics']):.3f}",
                      flush=True)


def add_missing_metrics(output, task):
    """Give each finished run of ``task`` the metrics of METRICS its record lacks (runs recorded before a metric was
    added), computed from the run's saved outputs (lossless PNGs of the images it was scored on); rewrites those
    records."""
    folder = osp.join(output, 'runs', task)
    crop_border = Task(task).crop_border
    for file_name in sorted(os.listdir(folder)) if osp.isdir(folder) else []:
        if not file_name.endswith('.json'):
            continue
        path = osp.join(folder, file_name)
        with open(path) as file:
            record = json.load(file)
        added = False
        for split, key in (('tuning', 'metrics'), ('confirmation', 'confirmation_metrics')):
            restored_folder = outputs_folder(output, task, record['setting'], record['seed'], split)
            for image_name, values in (record.get(key) or {}).items():
                missing = [name for name in METRICS if name not in values]
                if missing:
                    paths = [osp.join(folder, f'{image_name}.png')
                             for folder in (restored_folder, images_folder(output, 'gt', task, split))]
                    restored, gt = (cv2.imread(image_path) for image_path in paths)
                    if restored is None or gt is None:
                        raise SystemExit(f'{path} lacks {missing} for {image_name}, and {paths} cannot both be read '
                                         'to compute them: delete the record to run that setting and seed again.')
                    values.update(image_metrics(restored, gt, crop_border, missing))
                    added = True
        if added:
            write_record(path, record)


def load_runs(output, task, split='tuning'):
    """``{(setting, seed): metrics}`` of ``split`` and ``{setting: [records]}`` of a task's finished runs."""
    runs, records = {}, {}
    folder = osp.join(output, 'runs', task)
    for file_name in sorted(os.listdir(folder)) if osp.isdir(folder) else []:
        if file_name.endswith('.json'):
            with open(osp.join(folder, file_name)) as file:
                record = json.load(file)
            metrics = record['metrics'] if split == 'tuning' else record.get('confirmation_metrics')
            if metrics:
                runs[(record['setting'], record['seed'])] = metrics
                records.setdefault(record['setting'], []).append(record)
    return runs, records


def _difference_cell(result, digits):
    if result is None or math.isnan(result['mean']):
        return 'n/a'
    se = '' if math.isnan(result['se']) else f" ± {result['se']:.{digits}f}"
    return f"{result['mean']:+.{digits}f}{se}"


DIFFERENCES = (('psnr', 'dPSNR (dB)', 3), ('psnr_y', 'dPSNR-Y (dB)', 3), ('ssim', 'dSSIM', 4),
               ('ssim_y', 'dSSIM-Y', 4), ('niqe', 'dNIQE', 3), ('haarpsi', 'dHaarPSI', 4),
               ('ciede2000', 'dCIEDE2000', 3))


def task_report(args, task, split):
    """The markdown section of one task on one validation split, and its grids."""
    runs, records = load_runs(args.output, task, split)
    if not records:
        return ''
    names = [name for name in SETTINGS if name in records]
    first = records[names[0]][0]
    restorer = first['restorer']
    network = (f"{restorer.get('type', 'EDSR')} (num_feat {restorer['num_feat']}, num_block {restorer['num_block']})"
               if restorer.get('type', 'EDSR') == 'EDSR' else
               f"NAFNet ({restorer['nafnet']})" if restorer.get('nafnet') else restorer['type'])
    lines = [f'## {task}, {split} split', '', f"{network}, batch {restorer['batch']}, patch {restorer.get('patch')}, "
             f"{first['iters']} iterations, Adam lr {restorer['lr']} (cosine); "
             f"{len(runs[(names[0], first['seed'])])} validation images.",
             '', '| setting | weight | seeds | ms/step | ' + ' | '.join(METRICS) + ' |',
             '|---' * (4 + len(METRICS)) + '|']
    for name in names:
        seeds = sorted(record['seed'] for record in records[name])
        ms = sum(record['ms_per_step'] for record in records[name]) / len(records[name])
        means = ' | '.join(f'{metric_means(runs, name, metric):.4f}' for metric in METRICS)
        weights = '; '.join(_weight_cell(record['weight']) for record in records[name])
        lines.append(f"| {name} | {weights} | {','.join(map(str, seeds))} | {ms:.0f} | {means} |")
    lines += ['', f'Paired differences against {BASELINE} (per image, averaged over the shared seeds; ± standard '
              'error over images; wins: images where PSNR improved; per seed: the mean dPSNR of each seed).', '',
              *_difference_header('setting')]
    lines += [row for row in (_difference_row(name, runs, name, BASELINE) for name in names if name != BASELINE)
              if row]
    lines += ['', f'Lower is better for {", ".join(lower_is_better(METRICS))}. Grids (seed {first["seed"]}, the crops '
              f'where each setting differs most from {BASELINE}):', '']
    for name in names:
        if first['seed'] not in {record['seed'] for record in records[name]}:
            continue  # that run is unfinished (its outputs may be half written) or was not run
        grid = _save_setting_grid(args, task, name, first['seed'], split)
        if grid:
            lines.append(f'- {name}: `{grid}`')
    return '\n'.join(lines) + '\n'


def _difference_header(first_column):
    """The two header lines of a table of ``_difference_row`` rows."""
    return ['| ' + ' | '.join([first_column, *(title for _, title, _ in DIFFERENCES), 'wins', 'per seed']) + ' |',
            '|---' * (len(DIFFERENCES) + 3) + '|']


def _difference_row(label, runs, setting, against):
    """The table row ``label`` of ``setting``'s paired differences against ``against`` (each metric of
    DIFFERENCES, wins, per seed); None where the two have no run in common."""
    results = {metric: paired_difference(runs, setting, against, metric) for metric, _, _ in DIFFERENCES}
    psnr = results['psnr']
    if psnr is None:
        return None
    cells = ' | '.join(_difference_cell(results[metric], digits) for metric, _, digits in DIFFERENCES)
    per_seed = ', '.join(f'{value:+.3f}' for value in psnr['per_seed'])
    return f"| {label} | {cells} | {psnr['wins']}/{psnr['images']} | {per_seed} |"


def _weight_cell(weight):
    if isinstance(weight, dict):
        return ', '.join(f'{value:.3g}' for value in weight.values())
    return f'{weight:.3g}' if weight else '-'


def default_choice(runs_by_task):
    """The rule that chooses the default (issue: a default that never breaks training): among the DiffLoss settings
    with runs on every task, those whose dPSNR (RGB) is never below minus its standard error on any task; among them
    the best mean rank in dNIQE and dCIEDE2000 over the tasks. If none qualifies, the one whose worst dPSNR is
    highest (the safest)."""
    names = [name for name in SETTINGS if SETTINGS[name].get('extra') == 'diffloss'
             and all(paired_difference(runs, name, BASELINE, 'psnr') for runs in runs_by_task.values())]
    if not names:
        return 'No DiffLoss setting has finished runs on every task.'
    results = {name: {task: {metric: paired_difference(runs, name, BASELINE, metric)
                             for metric in ('psnr', 'niqe', 'ciede2000')} for task, runs in runs_by_task.items()}
               for name in names}
    keeps_psnr = [name for name in names if all(result['psnr']['mean'] >= -result['psnr']['se']
                                                for result in results[name].values())]
    if not keeps_psnr:
        safest = max(names, key=lambda name: min(result['psnr']['mean'] for result in results[name].values()))
        return (f"No DiffLoss setting keeps PSNR within its standard error of {BASELINE} on every task "
                f"({', '.join(runs_by_task)}); the safest (highest worst-task dPSNR): **{safest}**.")

    def rank(name):
        total = 0
        for task in runs_by_task:
            for metric in ('niqe', 'ciede2000'):
                order = sorted(keeps_psnr, key=lambda other: results[other][task][metric]['mean'])
                total += order.index(name)
        return total

    best = min(keeps_psnr, key=rank)
    return (f"Default by the rule (dPSNR >= -SE on every task of {', '.join(runs_by_task)}, then the best mean rank "
            f'in dNIQE and dCIEDE2000): **{best}**; the settings that keep PSNR: {", ".join(keeps_psnr)}.')


def _save_setting_grid(args, task, name, seed, split):
    if name == BASELINE:
        return None
    folders = {key: outputs_folder(args.output, task, label, seed, split)
               for key, label in (('baseline', BASELINE), ('diffloss', name))}
    if not all(osp.isdir(folder) for folder in folders.values()):
        return None
    images = {}
    for file_name in sorted(os.listdir(folders['baseline'])):
        image_name = osp.splitext(file_name)[0]
        images[image_name] = {key: cv2.imread(osp.join(folder, file_name)) for key, folder in folders.items()}
        for kind in ('gt', 'lq'):
            images[image_name][kind] = cv2.imread(osp.join(images_folder(args.output, kind, task, split), file_name))
    crops = choose_crops({key: (value['baseline'], value['diffloss']) for key, value in images.items()}, 64, 3)
    path = osp.join(args.output, f'grid_{task}{SPLIT_SUFFIX[split]}_{name}.png')
    save_grid(images, crops, path, f'{task} ({split}): {BASELINE} vs {name} (seed {seed})',
              labels=('LQ (bicubic to GT size)', BASELINE, name, 'GT'))
    return path


def versus_table(runs_by_task, new, old):
    """Markdown: setting ``new`` against setting ``old`` per task, paired per image over their shared seeds (as
    against L1), for the tasks where both ran."""
    rows = [row for row in (_difference_row(task, runs, new, old) for task, runs in runs_by_task.items()) if row]
    if not rows:
        return f'No task has runs of both {new} and {old}.'
    return '\n'.join([*_difference_header('task'), *rows])


def write_report(args):
    for task in TASKS:
        add_missing_metrics(args.output, task)
    sections = []
    for split in SPLIT_SUFFIX:
        sections += [task_report(args, task, split) for task in TASKS]
        runs_by_task = {task: load_runs(args.output, task, split)[0] for task in TASKS}
        runs_by_task = {task: runs for task, runs in runs_by_task.items() if runs}
        if runs_by_task:
            section = f'## The default rule on the {split} split\n\n{default_choice(runs_by_task)}\n'
            if len(runs_by_task) > 1:  # whether a preset per task would choose otherwise
                section += '\nEach task alone:\n\n' + ''.join(f'- {task}: {default_choice({task: runs})}\n'
                                                             for task, runs in runs_by_task.items())
            if args.versus:
                new, old = args.versus
                section += (f'\n{new} against {old} (paired per image over the shared seeds; wins: images where '
                            f'{new} has the higher PSNR):\n\n{versus_table(runs_by_task, new, old)}\n')
            sections.append(section)
    text = '\n'.join(section for section in sections if section)
    path = osp.join(args.output, 'study.md')
    with open(path, 'w') as file:
        file.write('# DiffLoss study\n\n' + text)
    print(f'report: {path}')
    if args.doc:
        header = (f"Written by `python scripts/run_study.py {' '.join(sys.argv[1:])}` on {time.strftime('%Y-%m-%d')} "
                  f'from the runs in its output folder, trained on {cpu_kind()}.\n\n')
        write_doc_section(args.doc, f'study:{args.section}', header + re.sub(r'^## ', '#### ', text, flags=re.M))
        print(f'report: {args.doc}, section {args.section}')


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--tasks', nargs='+', default=['sr4', 'dn25'], choices=TASKS)
    parser.add_argument('--settings', nargs='+', default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument('--seeds', nargs='+', type=int, default=[0, 1])
    parser.add_argument('--iters', type=int, default=3000, help='training iterations per run (default: 3000)')
    parser.add_argument('--batch', type=int, default=8, help='batch size (default: 8)')
    parser.add_argument('--patch', type=int, default=None,
                        help="training GT patch side (default: the task's, 64 for sr4 and ll, 48 for dn25)")
    parser.add_argument('--lr', type=float, default=5e-4, help='Adam learning rate, cosine decay (default: 5e-4)')
    parser.add_argument('--num_feat', type=int, default=32, help='EDSR channels (default: 32)')
    parser.add_argument('--num_block', type=int, default=4, help='EDSR residual blocks (default: 4)')
    parser.add_argument('--prior', default='default', help="DiffusionPrior 'pretrained' (default: default)")
    parser.add_argument('--t_range', nargs=2, type=int, default=None,
                        help="DiffLoss t_range of every setting (default: each setting's, 200 800)")
    parser.add_argument('--crop_size', type=int, default=32,
                        help='DiffLoss crop_size (default: 32, the crop size the default prior was trained on)')
    parser.add_argument('--photos', help='the photo folder the fixed split names (study/data.py; the 26 photos of the '
                        "project's shared data, e.g. ../shared/data/photos); required unless --report_only")
    parser.add_argument('--confirm_photos', help='a folder of photos from other sources, evaluated at native '
                        'resolution as the confirmation split (metrics reported apart from the tuning split)')
    parser.add_argument('--photo_scale', type=float, default=0.5, help='photo resize factor (default: 0.5)')
    parser.add_argument('--split_prior', help="DiffusionPrior 'pretrained' of the settings with prior 'split': the "
                        'prior trained on the study split (options/train/prior/train_study_split_prior.yml)')
    parser.add_argument('--val_size', type=int, default=None,
                        help='validation: the central crop of this side (default: the whole photos)')
    parser.add_argument('--log_every', type=int, default=100)
    parser.add_argument('--output', default=osp.join('results', 'study'))
    parser.add_argument('--report_only', action='store_true', help='only write study.md from finished runs')
    parser.add_argument('--versus', nargs=2, metavar=('NEW', 'OLD'), choices=list(SETTINGS),
                        help='also compare setting NEW with setting OLD directly, per task and split, paired per '
                        'image as against L1')
    parser.add_argument('--doc', help="also write the report into this doc (docs/study.md), between its "
                        "'<!-- study:SECTION -->' markers")
    parser.add_argument('--section', help='with --doc: the name in its markers')
    args = parser.parse_args()
    if bool(args.doc) != bool(args.section):
        parser.error('--doc and --section go together')
    if args.versus and args.versus[0] == args.versus[1]:
        parser.error(f'--versus {args.versus[0]} {args.versus[1]}: two different settings, e.g. --versus '
                     'strength_2_guard_0_late strength_2_guard_0')
    if not args.report_only and not args.photos:
        parser.error('--photos is required: the folder of photos the fixed split names (see scripts/study/data.py).')
    if args.split_prior and not any(SETTINGS[name].get('prior') == 'split' for name in args.settings):
        parser.error(f"--split_prior {args.split_prior}: none of --settings uses it (the settings with prior 'split': "
                     f"{[name for name, setting in SETTINGS.items() if setting.get('prior') == 'split']}).")
    if not args.report_only:
        run_all(args)
    write_report(args)


if __name__ == '__main__':
    main()
