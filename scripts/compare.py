"""Train (or take) a baseline and a +DiffLoss run, evaluate both, and write one report folder.

Train both runs with the same seed, data and iterations, then compare:
    python scripts/compare.py -opt options/train/demo/train_EDSR_x4_demo_diffloss.yml --output results/compare_demo
The baseline is the same file without ``train.diffusion_opt``: an existing twin next to it (``<stem>_baseline.yml``,
or the demo's ``<stem>_l1.yml``) when it matches, else ``<stem>_baseline.yml`` written there. ``--baseline_opt``
gives the baseline explicitly; ``--iters N`` and ``--force_yml key:sub=value ...`` apply to both runs.

Compare two finished experiment folders (no training):
    python scripts/compare.py --baseline_exp experiments/A --diffloss_exp experiments/B --output results/compare_AB

Options:
    -opt FILE            the +DiffLoss option file (train mode).
    --baseline_opt FILE  the baseline option file. Default: derived from -opt as above.
    --baseline_exp DIR, --diffloss_exp DIR   finished experiment folders (instead of -opt).
    --iters N            train:total_iter for both runs. Default: the file's.
    --force_yml ...      BasicSR --force_yml entries for both runs. Default: none.
    --datasets_from FILE evaluate on this test option file's datasets. Default: the option file's datasets.val*.
    --output DIR         the report folder. Default: results/compare_<+DiffLoss experiment name>.
    --crops N            crops per grid. Default: 3.
    --crop_size N        crop side in GT pixels. Default: 96.

Run from the directory the option files' relative paths refer to (experiments/ is written there). The report folder
holds report.md, table_<set>.md, grid_<set>.png, training_curves.png, metrics.json, outputs/ (restored images) and
logs/ (the training subprocesses' output).
"""
import argparse
import json
import os
import sys
from os import path as osp

import cv2

import basicsr_diffloss  # noqa: F401  (repairs basicsr and registers everything)
from basicsr.data import build_dataset
from basicsr.utils import tensor2img
from basicsr_diffloss.report.curves import save_training_curves
from basicsr_diffloss.report.evaluation import comparison_metrics, evaluate, evaluation_datasets
from basicsr_diffloss.report.grid import choose_crops, save_grid
from basicsr_diffloss.report.markdown import metric_table, report_markdown
from basicsr_diffloss.report.options import (apply_force_yml, baseline_option_file, comparable_differences,
                                             load_option_file)
from basicsr_diffloss.report.train_log import parse_train_log
from basicsr_diffloss.report.training import Experiment, train

RUN_LABELS = {'baseline': 'baseline', 'diffloss': '+DiffLoss'}


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('-opt', help='the +DiffLoss option file (train both runs)')
    parser.add_argument('--baseline_opt', help='the baseline option file (default: derived from -opt)')
    parser.add_argument('--baseline_exp', help='a finished baseline experiment folder')
    parser.add_argument('--diffloss_exp', help='a finished +DiffLoss experiment folder')
    parser.add_argument('--iters', type=int, help='train:total_iter for both runs')
    parser.add_argument('--force_yml', nargs='+', default=[], help='BasicSR --force_yml entries for both runs')
    parser.add_argument('--datasets_from', help='a test option file whose datasets are evaluated')
    parser.add_argument('--output', help='report folder (default: results/compare_<name>)')
    parser.add_argument('--crops', type=int, default=3, help='crops per grid (default: 3)')
    parser.add_argument('--crop_size', type=int, default=96, help='crop side in GT pixels (default: 96)')
    args = parser.parse_args(argv)
    if bool(args.opt) == bool(args.baseline_exp or args.diffloss_exp):
        parser.error('give either -opt (train both runs) or --baseline_exp and --diffloss_exp (finished runs).')
    if not args.opt and not (args.baseline_exp and args.diffloss_exp):
        parser.error('--baseline_exp and --diffloss_exp go together.')
    if args.opt and args.iters is not None:
        args.force_yml = args.force_yml + [f'train:total_iter={args.iters}']
    return args


def train_both(args, logs_dir):
    """Train the baseline and the +DiffLoss run; return their Experiment folders."""
    files = {'diffloss': args.opt, 'baseline': args.baseline_opt or baseline_option_file(args.opt)}
    opts = {run: apply_force_yml(load_option_file(path), args.force_yml) for run, path in files.items()}
    extra = comparable_differences(opts['baseline'], opts['diffloss'])
    if extra:
        print(f'WARNING: {files["baseline"]} and {files["diffloss"]} also differ in {extra}: the comparison is '
              'not like for like.', file=sys.stderr)
    print(f"baseline: {files['baseline']}\n+DiffLoss: {files['diffloss']}", file=sys.stderr)
    experiments = {}
    for run in ('baseline', 'diffloss'):
        train(files[run], args.force_yml, opts[run]['train']['total_iter'], RUN_LABELS[run],
              osp.join(logs_dir, f'{run}_train.txt'))
        experiments[run] = Experiment(osp.join('experiments', opts[run]['name']))
    return experiments


def load_images(dataset_opt, outputs):
    """Per image name: LQ and GT from the dataset, and each run's saved output (all uint8 BGR)."""
    dataset = build_dataset(dataset_opt)
    images = {}
    for index in range(len(dataset)):
        item = dataset[index]
        name = osp.splitext(osp.basename(item['lq_path']))[0]
        images[name] = dict(lq=tensor2img(item['lq']), gt=tensor2img(item['gt']))
        for run, folder in outputs.items():
            images[name][run] = cv2.imread(osp.join(folder, f'{name}_{run}.png'), cv2.IMREAD_UNCHANGED)
    return images


def main(argv=None):
    args = parse_args(argv)
    experiments = None if args.opt else {'baseline': Experiment(args.baseline_exp),
                                         'diffloss': Experiment(args.diffloss_exp)}
    name = apply_force_yml(load_option_file(args.opt) if args.opt else experiments['diffloss'].opt,
                           args.force_yml)['name']
    output = args.output or osp.join('results', f'compare_{name}')
    os.makedirs(output, exist_ok=True)
    if args.opt:
        experiments = train_both(args, osp.join(output, 'logs'))
    opt = apply_force_yml(experiments['diffloss'].opt, args.force_yml)
    datasets = evaluation_datasets(opt, load_option_file(args.datasets_from) if args.datasets_from else None)
    metrics = comparison_metrics(opt)

    results = {}
    for run, experiment in experiments.items():
        print(f'Evaluating {RUN_LABELS[run]}: {experiment.checkpoint}', file=sys.stderr)
        run_opt = apply_force_yml(experiment.opt, args.force_yml)
        results[run] = evaluate(run_opt, experiment.checkpoint, datasets, metrics, run,
                                osp.join(output, 'outputs', run))
    tables, grids = {}, {}
    for dataset_opt in datasets.values():
        dataset = dataset_opt['name']
        per_run = {run: results[run][dataset] for run in experiments}
        tables[dataset] = metric_table(per_run)
        with open(osp.join(output, f'table_{dataset}.md'), 'w') as f:
            f.write(tables[dataset])
        images = load_images(dataset_opt, {run: per_run[run]['images'] for run in experiments})
        crops = choose_crops({image: (columns['baseline'], columns['diffloss']) for image, columns in images.items()},
                             args.crop_size, args.crops)
        grids[dataset] = f'grid_{dataset}.png'
        save_grid(images, crops, osp.join(output, grids[dataset]), f'{dataset}: LQ | baseline | +DiffLoss | GT')
    save_training_curves({RUN_LABELS[run]: parse_train_log(experiment.train_log)
                          for run, experiment in experiments.items()}, osp.join(output, 'training_curves.png'))

    header = [f'- {RUN_LABELS[run]}: `{experiment.folder}` (checkpoint `{experiment.checkpoint}`, options '
              f'`{experiment.option_file}`)' for run, experiment in experiments.items()]
    header.append(f"- iterations: {opt['train']['total_iter']}, seed: {opt.get('manual_seed')}")
    with open(osp.join(output, 'report.md'), 'w') as f:
        f.write(report_markdown(header, tables, grids, 'training_curves.png'))
    with open(osp.join(output, 'metrics.json'), 'w') as f:
        json.dump({run: {dataset: dict(values=r['values'], counts=r['counts']) for dataset, r in per_set.items()}
                   for run, per_set in results.items()}, f, indent=1)
    print(f'Report: {osp.join(output, "report.md")}', file=sys.stderr)
    for dataset, table in tables.items():
        print(f'\n{dataset}\n{table}')
    return output


if __name__ == '__main__':
    main()
