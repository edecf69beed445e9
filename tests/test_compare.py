"""scripts/compare.py end to end on tiny data (train both runs, evaluate, report), and the prior diagnostics."""
import glob
import importlib.util
import json
import os
from os import path as osp

import cv2
import pytest
import yaml

from basicsr_diffloss.report.train_log import parse_train_log
from conftest import REPO, tiny_demo_run, write_options

DIFFLOSS_NAME, BASELINE_NAME = 'demo_EDSR_x4_diffloss', 'demo_EDSR_x4_baseline'


def load_compare_script():
    spec = importlib.util.spec_from_file_location('compare', osp.join(REPO, 'scripts', 'compare.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_in(folder, function, *args):
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        return function(*args)
    finally:
        os.chdir(cwd)


@pytest.fixture(scope='module')
def compared(tmp_path_factory):
    """The demo's +DiffLoss option file, shrunk, compared after 2 iterations per run (``--iters 2``)."""
    root = tmp_path_factory.mktemp('compare')
    opt = tiny_demo_run(root, val_count=2, val_size=96)
    opt['val'].update(val_freq=1, prior_diagnostics=dict(timesteps=[100, 700], max_images=1))
    opt['val']['metrics']['niqe']['type'] = 'calculate_niqe_or_nan'  # BasicSR's fails on 96 px images
    opt['logger'].update(print_freq=1, save_checkpoint_freq=2)
    (root / 'options').mkdir()
    option_file = write_options(opt, root / 'options' / 'train_tiny_diffloss.yml')
    compare = load_compare_script()
    run_in(root, compare.main, ['-opt', option_file, '--iters', '2', '--output', 'report', '--crop_size', '32'])
    return root, compare


def test_baseline_file_is_the_same_options_without_diffloss(compared):
    root, _ = compared
    baseline = yaml.safe_load(open(root / 'options' / 'train_tiny_baseline.yml'))
    diffloss = yaml.safe_load(open(root / 'options' / 'train_tiny_diffloss.yml'))
    assert baseline['name'] == BASELINE_NAME and 'diffusion_opt' not in baseline['train']
    del diffloss['train']['diffusion_opt']
    assert {**baseline, 'name': None} == {**diffloss, 'name': None}


def test_both_runs_trained_the_requested_iterations(compared):
    root, _ = compared
    for name in (BASELINE_NAME, DIFFLOSS_NAME):
        losses, metrics = parse_train_log(glob.glob(str(root / 'experiments' / name / 'train_*.log'))[0])
        assert sorted(losses['l_pix']) == [1, 2]
        assert sorted(metrics[('demo_val', 'psnr')]) == [1, 2]
        assert ('l_diff_eps' in losses) == (name == DIFFLOSS_NAME)


def test_report_table_holds_both_runs_and_every_metric(compared):
    root, _ = compared
    table = open(root / 'report' / 'table_demo_val.md').read()
    header, _, baseline, diffloss, delta = table.strip().split('\n')
    for title in ('PSNR', 'PSNR-Y', 'SSIM', 'SSIM-Y', 'NIQE', 'HaarPSI', 'GMSD', 'MS-SSIM'):
        assert f'| {title} ' in header
    assert baseline.startswith('| baseline |') and diffloss.startswith('| +DiffLoss |')
    assert 'n/a' in baseline  # NIQE and MS-SSIM cannot be computed on 96 px images
    metrics = json.load(open(root / 'report' / 'metrics.json'))
    assert metrics['diffloss']['demo_val']['counts']['psnr'] == [2, 2]
    assert f"{metrics['baseline']['demo_val']['values']['psnr_y']:.4f}" in baseline
    report = open(root / 'report' / 'report.md').read()
    assert table in report and '![demo_val crops](grid_demo_val.png)' in report
    assert '![training curves](training_curves.png)' in report


def test_grid_and_curves_are_pictures(compared):
    root, _ = compared
    grid = cv2.imread(str(root / 'report' / 'grid_demo_val.png'))
    curves = cv2.imread(str(root / 'report' / 'training_curves.png'))
    assert grid is not None and grid.shape[0] > 300 and grid.shape[1] > 600  # 3 rows of 4 crops
    assert curves is not None and curves.shape[1] > 600
    for run in ('baseline', 'diffloss'):
        assert len(glob.glob(str(root / 'report' / 'outputs' / run / 'demo_val' / f'*_{run}.png'))) == 2


def test_prior_diagnostics_are_drawn_at_each_validation(compared):
    root, _ = compared
    pictures = sorted(glob.glob(str(root / 'experiments' / DIFFLOSS_NAME / 'visualization' / 'prior' / 'demo_val' /
                                    '*.png')))
    names = [osp.splitext(osp.basename(path))[0].split('_') for path in pictures]
    assert len({image for image, _ in names}) == 1  # max_images: 1
    assert {'1', '2'} <= {iteration for _, iteration in names}  # val_freq: 1
    assert cv2.imread(pictures[0]).shape[0] == 3 * (2 * 96 + 22)  # output/GT row, a row per t; 96 px shown 2x
    assert not osp.exists(root / 'experiments' / BASELINE_NAME / 'visualization' / 'prior')


def test_finished_experiment_folders_are_compared_without_training(compared):
    root, compare = compared
    run_in(root, compare.main, ['--baseline_exp', f'experiments/{BASELINE_NAME}', '--diffloss_exp',
                                f'experiments/{DIFFLOSS_NAME}', '--output', 'report_again', '--crop_size', '32'])
    again, first = (open(root / folder / 'table_demo_val.md').read() for folder in ('report_again', 'report'))
    assert again == first
    assert osp.isfile(root / 'report_again' / 'grid_demo_val.png')
