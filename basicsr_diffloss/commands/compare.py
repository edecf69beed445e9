"""Train (or take) a baseline and a +DiffLoss run, evaluate both, and write one report folder.

Train both runs with the same seed, data and iterations, then compare:
    basicsr-diffloss-compare -opt options/train/demo/train_EDSR_x4_demo_diffloss.yml --output results/compare_demo
The baseline is the same file without ``train.diffusion_opt``: an existing twin next to it (``<stem>_baseline.yml``,
or the demo's ``<stem>_l1.yml``) when it matches, else ``<stem>_baseline.yml`` written there. ``--baseline_opt``
gives the baseline explicitly; ``--iters N`` and ``--force_yml key:sub=value ...`` apply to both runs.

The two runs never share an experiment folder: each trains into ``experiments/<its name>``. A ``--force_yml name=X``
entry names them ``X_baseline`` and ``X_diffloss`` (and the default report folder ``results/compare_X``); two option
files with the same ``name`` are refused before anything is trained.

Compare two finished experiment folders (no training):
    basicsr-diffloss-compare --baseline_exp experiments/A --diffloss_exp experiments/B --output results/compare_AB
The +DiffLoss run must have trained with the diffusion term (``train.diffusion_opt`` in its option copy or logged
options, or ``l_diff_*`` in its log) and a baseline that did, beside one that did not, is refused as a swapped pair.
The report gives the iterations of the checkpoints evaluated (``net_g_<iter>.pth``; ``net_g_latest.pth``: the
logged ``train.total_iter``).

Options:
    -opt FILE            the +DiffLoss option file (train mode).
    --baseline_opt FILE  the baseline option file. Default: derived from -opt as above.
    --baseline_exp DIR, --diffloss_exp DIR   finished experiment folders (instead of -opt); two different folders.
    --iters N            train:total_iter for both runs. Default: the file's.
    --force_yml ...      BasicSR --force_yml entries for both runs (name=X: see above). Default: none.
    --datasets_from FILE evaluate on this test option file's datasets. Default: the option file's datasets.val*.
    --output DIR         the report folder. Default: results/compare_<+DiffLoss experiment name>.
    --crops N            crops per grid. Default: 3.
    --crop_size N        crop side in GT pixels. Default: 96.
    --debug              show the traceback of a user error instead of its one-line message.

Run from the directory the option files' relative paths refer to (experiments/ is written there). The report folder
holds report.md, table_<set>.md, grid_<set>.png, training_curves.png, metrics.json, outputs/ (restored images) and
logs/ (the training subprocesses' output). Needs matplotlib, the package's ``report`` extra
(``pip install 'basicsr-diffloss[report]'``). ``python scripts/compare.py`` is the same command.
"""
import argparse
import json
import os
import sys
import time
from os import path as osp

import cv2
from basicsr.data import build_dataset
from basicsr.utils import tensor2img

from ..report.curves import save_training_curves
from ..report.evaluation import comparison_metrics, evaluate, evaluation_datasets
from ..report.grid import choose_crops, save_grid
from ..report.markdown import metric_table, report_markdown
from ..option_keys import apply_force_yml
from ..report.options import baseline_option_file, comparable_differences, load_option_file
from ..report.pictures import require_matplotlib
from ..report.train_log import parse_train_log
from ..report.training import (Experiment, check_experiments, check_roles, identical_weights, run_force_yml,
                               split_name_override, train)
from .user_errors import exit_on_user_error

RUN_LABELS = {'baseline': 'baseline', 'diffloss': '+DiffLoss'}


def parse_args(argv):
    parser = argparse.ArgumentParser(prog='basicsr-diffloss-compare', description=__doc__.split('\n')[0])
    parser.add_argument('-opt', help='the +DiffLoss option file (train both runs)')
    parser.add_argument('--baseline_opt', help='the baseline option file (default: derived from -opt)')
    parser.add_argument('--baseline_exp', help='a finished baseline experiment folder')
    parser.add_argument('--diffloss_exp', help='a finished +DiffLoss experiment folder')
    parser.add_argument('--iters', type=int, help='train:total_iter for both runs')
    parser.add_argument('--force_yml', nargs='+', default=[],
                        help='BasicSR --force_yml entries for both runs; name=X names them X_baseline and X_diffloss')
    parser.add_argument('--datasets_from', help='a test option file whose datasets are evaluated')
    parser.add_argument('--output', help='report folder (default: results/compare_<name>)')
    parser.add_argument('--crops', type=int, default=3, help='crops per grid (default: 3)')
    parser.add_argument('--crop_size', type=int, default=96, help='crop side in GT pixels (default: 96)')
    parser.add_argument('--debug', action='store_true', help='show the traceback of a user error')
    args = parser.parse_args(argv)
    if bool(args.opt) == bool(args.baseline_exp or args.diffloss_exp):
        parser.error('give either -opt (train both runs) or --baseline_exp and --diffloss_exp (finished runs).')
    if not args.opt and not (args.baseline_exp and args.diffloss_exp):
        parser.error('--baseline_exp and --diffloss_exp go together.')
    if args.baseline_exp and osp.realpath(args.baseline_exp) == osp.realpath(args.diffloss_exp):
        parser.error(f"--baseline_exp and --diffloss_exp are the same folder ('{args.baseline_exp}'): a network "
                     'compared with itself. Give the baseline run and the +DiffLoss run.')
    if args.opt and args.iters is not None:
        args.force_yml = args.force_yml + [f'train:total_iter={args.iters}']
    return args


def plan_runs(args):
    """The two trainings of ``-opt`` mode, checked before any starts: ``{run: (option file, force_yml, options)}``.

    A ``name=X`` entry of ``--force_yml`` becomes ``name=X_<run>``; two runs with one name (hence one experiment
    folder, which BasicSR would archive and reuse) are an error naming ``name``.
    """
    name, _ = split_name_override(args.force_yml)
    files = {'baseline': args.baseline_opt or baseline_option_file(args.opt), 'diffloss': args.opt}
    plan = {}
    for run, option_file in files.items():
        entries = run_force_yml(args.force_yml, run)
        plan[run] = (option_file, entries, apply_force_yml(load_option_file(option_file), entries))
    names = {run: opt['name'] for run, (_, _, opt) in plan.items()}
    if names['baseline'] == names['diffloss']:
        raise ValueError(f"both runs are named '{names['diffloss']}' (option 'name' of {files['baseline']} and "
                         f"{files['diffloss']}), so both would train into experiments/{names['diffloss']} and the "
                         'comparison would evaluate one network twice. Give the two option files different names, '
                         'or add --force_yml name=X to train into experiments/X_baseline and experiments/X_diffloss.')
    if (plan['baseline'][2].get('train') or {}).get('diffusion_opt'):
        print(f"WARNING: the baseline {files['baseline']} has a train.diffusion_opt too: both runs train with "
              'DiffLoss.', file=sys.stderr)
    extra = comparable_differences(plan['baseline'][2], plan['diffloss'][2])
    if extra:
        print(f'WARNING: {files["baseline"]} and {files["diffloss"]} also differ in {extra}: the comparison is '
              'not like for like.', file=sys.stderr)
    print(f"baseline: {files['baseline']} -> experiments/{names['baseline']}\n"
          f"+DiffLoss: {files['diffloss']} -> experiments/{names['diffloss']}", file=sys.stderr)
    return plan


def train_both(plan, logs_dir):
    """Train the planned runs one after the other; return their Experiment folders, checked after both finished."""
    started = {}
    for run, (option_file, entries, opt) in plan.items():
        started[run] = time.time()
        train(option_file, entries, opt['train']['total_iter'], RUN_LABELS[run],
              osp.join(logs_dir, f'{run}_train.txt'))
    experiments = {run: Experiment(osp.join('experiments', opt['name'])) for run, (_, _, opt) in plan.items()}
    check_experiments(experiments, started)
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
    """The command: a user error ends it with one line (``--debug``: the traceback)."""
    return exit_on_user_error('basicsr-diffloss-compare', compare, argv)


def compare(argv):
    args = parse_args(argv)
    try:
        require_matplotlib()  # before hours of training, not after
    except ImportError as error:
        raise SystemExit(f'basicsr-diffloss-compare: {error}') from None

    name, force_yml = split_name_override(args.force_yml)
    try:
        if args.opt:
            plan = plan_runs(args)
            name = name or plan['diffloss'][2]['name']
        else:
            experiments = {'baseline': Experiment(args.baseline_exp), 'diffloss': Experiment(args.diffloss_exp)}
            check_experiments(experiments)
            name = name or apply_force_yml(experiments['diffloss'].opt, force_yml)['name']
    except ValueError as error:
        raise SystemExit(f'basicsr-diffloss-compare: error: {error}') from None
    if not args.opt:
        roles_warning = check_roles(experiments)
    output = args.output or osp.join('results', f'compare_{name}')
    os.makedirs(output, exist_ok=True)
    if args.opt:
        try:
            experiments = train_both(plan, osp.join(output, 'logs'))
        except ValueError as error:
            raise SystemExit(f'basicsr-diffloss-compare: error: {error}') from None
        roles_warning = check_roles(experiments)
    if roles_warning:
        print(f'WARNING: {roles_warning}.', file=sys.stderr)
    opt = apply_force_yml(experiments['diffloss'].opt, force_yml)
    datasets = evaluation_datasets(opt, load_option_file(args.datasets_from) if args.datasets_from else None)
    metrics = comparison_metrics(opt)

    results = {}
    for run, experiment in experiments.items():
        print(f'Evaluating {RUN_LABELS[run]}: {experiment.checkpoint}', file=sys.stderr)
        run_opt = apply_force_yml(experiment.opt, force_yml)
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

    header = [f'- {RUN_LABELS[run]}: experiment folder `{experiment.folder}` (checkpoint `{experiment.checkpoint}`, '
              f'options `{experiment.option_file}`)' for run, experiment in experiments.items()]
    iterations = {run: experiment.iterations for run, experiment in experiments.items()}
    header.append(f"- iterations (of the checkpoints evaluated): baseline {iterations['baseline']}, +DiffLoss "
                  f"{iterations['diffloss']}; seed: {opt.get('manual_seed')}")
    if iterations['baseline'] != iterations['diffloss']:
        warning = 'the two checkpoints were trained for different numbers of iterations: not like for like'
        print(f'WARNING: {warning}.', file=sys.stderr)
        header.append(f'- **Warning**: {warning}.')
    if roles_warning:
        header.append(f'- **Warning**: {roles_warning}.')
    if identical_weights(experiments['baseline'].checkpoint, experiments['diffloss'].checkpoint):
        warning = ('the two checkpoints hold identical weights: the diffusion term changed nothing in this run '
                   '(e.g. train.diffusion_opt.start_iter at or beyond the iterations trained)')
        print(f'WARNING: {warning}.', file=sys.stderr)
        header.append(f'- **Warning**: {warning}.')
    with open(osp.join(output, 'report.md'), 'w') as f:
        f.write(report_markdown(header, tables, grids, 'training_curves.png'))
    with open(osp.join(output, 'metrics.json'), 'w') as f:
        json.dump({run: {dataset: dict(values=r['values'], counts=r['counts']) for dataset, r in per_set.items()}
                   for run, per_set in results.items()}, f, indent=1)
    print(f'Report: {osp.join(output, "report.md")}', file=sys.stderr)
    for dataset, table in tables.items():
        print(f'\n{dataset}\n{table}')


if __name__ == '__main__':
    main()
