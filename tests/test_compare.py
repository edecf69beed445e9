"""The compare command (basicsr-diffloss-compare, scripts/compare.py) end to end on tiny data (train both runs,
evaluate, report), its refusals to compare a network with itself, and the prior diagnostics."""
import glob
import json
import os
import shutil
import subprocess
import sys
import time
from os import path as osp

import cv2
import pytest
import yaml

from basicsr_diffloss.commands import compare as compare_command
from basicsr_diffloss.report.train_log import parse_train_log
from basicsr_diffloss.report.training import Experiment, check_experiments
from conftest import load_options, run_in, tiny_demo_run, write_options

DIFFLOSS_NAME, BASELINE_NAME = 'demo_EDSR_x4_diffloss', 'demo_EDSR_x4_baseline'


def tiny_compare_options(root):
    """The demo's +DiffLoss option file, shrunk, written to ``root/options/train_tiny_diffloss.yml``."""
    opt = tiny_demo_run(root, val_count=2, val_size=96)
    opt['val'].update(val_freq=1, prior_diagnostics=dict(timesteps=[100, 700], max_images=1))
    opt['val']['metrics']['niqe']['type'] = 'calculate_niqe_or_nan'  # BasicSR's fails on 96 px images
    opt['logger'].update(print_freq=1, save_checkpoint_freq=2)
    (root / 'options').mkdir()
    return write_options(opt, root / 'options' / 'train_tiny_diffloss.yml')


@pytest.fixture(scope='module')
def compared(tmp_path_factory):
    """The demo's +DiffLoss option file, shrunk, compared after 2 iterations per run (``--iters 2``)."""
    root = tmp_path_factory.mktemp('compare')
    option_file = tiny_compare_options(root)
    run_in(root, compare_command.main, ['-opt', option_file, '--iters', '2', '--output', 'report', '--crop_size', '32'])
    return root, compare_command


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


# ---------------------------------------------------------------------------------------------------------------------
# The two runs never share an experiment folder, and the table never shows one network twice


@pytest.fixture(scope='module')
def named(tmp_path_factory):
    """The tiny comparison with ``--force_yml name=tiny``, which once trained both runs into experiments/tiny (BasicSR
    archived the baseline), reported the +DiffLoss network in both rows, then failed on the baseline's log."""
    root = tmp_path_factory.mktemp('compare_named')
    option_file = tiny_compare_options(root)
    run_in(root, compare_command.main, ['-opt', option_file, '--iters', '2', '--force_yml', 'name=tiny',
                                        '--crop_size', '32'])
    return root


def test_a_name_override_trains_each_run_into_its_own_folder(named):
    assert sorted(os.listdir(named / 'experiments')) == ['tiny_baseline', 'tiny_diffloss']
    for run in ('baseline', 'diffloss'):
        logs = glob.glob(str(named / 'experiments' / f'tiny_{run}' / f'train_tiny_{run}_*.log'))
        losses, _ = parse_train_log(logs[0])
        assert sorted(losses['l_pix']) == [1, 2] and ('l_diff_eps' in losses) == (run == 'diffloss')
    report = open(named / 'results' / 'compare_tiny' / 'report.md').read()  # the default folder names the override
    for label, run in (('baseline', 'baseline'), ('+DiffLoss', 'diffloss')):
        assert f'- {label}: experiment folder `experiments/tiny_{run}` (checkpoint `experiments/tiny_{run}/' in report


def test_a_name_override_reports_two_different_networks(named):
    folder = named / 'results' / 'compare_tiny'
    metrics = json.load(open(folder / 'metrics.json'))
    baseline, diffloss = (metrics[run]['demo_val']['values'] for run in ('baseline', 'diffloss'))
    assert all(baseline[key] != diffloss[key] for key in ('psnr', 'psnr_y', 'ssim', 'haarpsi', 'gmsd'))
    _, _, baseline_row, diffloss_row, _ = open(folder / 'table_demo_val.md').read().strip().split('\n')
    assert baseline_row.split('|')[2:] != diffloss_row.split('|')[2:]
    assert 'identical weights' not in open(folder / 'report.md').read()


def test_two_option_files_with_one_name_are_refused_before_training(tmp_path):
    option_file = tiny_compare_options(tmp_path)
    opt = yaml.safe_load(open(option_file))
    del opt['train']['diffusion_opt']
    baseline = write_options(opt, tmp_path / 'options' / 'same_name_baseline.yml')  # the +DiffLoss file's name
    with pytest.raises(SystemExit, match=r"both runs are named 'demo_EDSR_x4_diffloss' \(option 'name' .*"
                       r"--force_yml name=X to train into experiments/X_baseline and experiments/X_diffloss"):
        run_in(tmp_path, compare_command.main, ['-opt', option_file, '--baseline_opt', baseline, '--iters', '1'])
    assert not osp.exists(tmp_path / 'experiments') and not osp.exists(tmp_path / 'results')


def test_the_same_experiment_folder_twice_is_refused(compared, capsys):
    root, compare = compared
    for spelling in (f'experiments/{DIFFLOSS_NAME}', f'./experiments/{DIFFLOSS_NAME}/',
                     str(root / 'experiments' / DIFFLOSS_NAME)):
        with pytest.raises(SystemExit):
            run_in(root, compare.main, ['--baseline_exp', f'experiments/{DIFFLOSS_NAME}', '--diffloss_exp', spelling,
                                        '--output', 'report_self'])
        assert 'are the same folder' in capsys.readouterr().err
    assert not osp.exists(root / 'report_self')


def test_a_checkpoint_linked_from_the_other_run_is_refused(compared, tmp_path):
    root, compare = compared
    borrowed = tmp_path / 'borrowed'
    shutil.copytree(root / 'experiments' / BASELINE_NAME, borrowed)
    (borrowed / 'models' / 'net_g_latest.pth').unlink()
    (borrowed / 'models' / 'net_g_latest.pth').symlink_to(root / 'experiments' / DIFFLOSS_NAME / 'models' /
                                                          'net_g_latest.pth')
    with pytest.raises(SystemExit, match='baseline checkpoint .* lies outside its experiment folder'):
        run_in(root, compare.main, ['--baseline_exp', str(borrowed), '--diffloss_exp', f'experiments/{DIFFLOSS_NAME}',
                                    '--output', str(tmp_path / 'report')])
    assert not osp.exists(tmp_path / 'report')


def test_a_checkpoint_older_than_its_training_is_refused(compared):
    root, _ = compared
    experiments = {run: Experiment(str(root / 'experiments' / name))
                   for run, name in (('baseline', BASELINE_NAME), ('diffloss', DIFFLOSS_NAME))}
    check_experiments(experiments, {'baseline': 0, 'diffloss': 0})
    with pytest.raises(ValueError, match="the diffloss checkpoint '.*' is older than the diffloss training"):
        check_experiments(experiments, {'baseline': 0, 'diffloss': time.time() + 60})


def test_identical_weights_are_reported_with_a_warning(compared, tmp_path):
    root, compare = compared
    twin = tmp_path / 'twin'
    shutil.copytree(root / 'experiments' / DIFFLOSS_NAME, twin)
    run_in(root, compare.main, ['--baseline_exp', str(twin), '--diffloss_exp', f'experiments/{DIFFLOSS_NAME}',
                                '--output', str(tmp_path / 'report'), '--crop_size', '32'])
    assert '**Warning**: the two checkpoints hold identical weights' in open(tmp_path / 'report' / 'report.md').read()


# ---------------------------------------------------------------------------------------------------------------------
# matplotlib is the 'report' extra


def test_without_matplotlib_compare_stops_before_training_and_names_the_extra(tmp_path):
    option_file = tiny_compare_options(tmp_path)
    code = ("import sys; sys.modules['matplotlib'] = None; from basicsr_diffloss.commands.compare import main; "
            f"main(['-opt', {option_file!r}, '--iters', '1'])")
    result = subprocess.run([sys.executable, '-c', code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    assert "matplotlib, which is not installed: it comes with the package's 'report' extra (pip install " \
        "'basicsr-diffloss[report]'" in result.stderr
    assert 'Traceback' not in result.stderr
    assert not osp.exists(tmp_path / 'experiments') and not osp.exists(tmp_path / 'results')


# ---------------------------------------------------------------------------------------------------------------------
# The report never swaps or mislabels the runs


def test_a_swapped_pair_is_refused(compared, tmp_path, capsys):
    root, compare = compared
    with pytest.raises(SystemExit) as caught:
        run_in(root, compare.main, ['--baseline_exp', f'experiments/{DIFFLOSS_NAME}', '--diffloss_exp',
                                    f'experiments/{BASELINE_NAME}', '--output', str(tmp_path / 'swapped')])
    print(f'\n{caught.value}')
    assert str(caught.value) == (
        f"basicsr-diffloss-compare: error: the runs are swapped: the baseline 'experiments/{DIFFLOSS_NAME}' trained "
        "with DiffLoss (its option file copy has train.diffusion_opt) and the +DiffLoss run "
        f"'experiments/{BASELINE_NAME}' without it; give --baseline_exp experiments/{BASELINE_NAME} --diffloss_exp "
        f'experiments/{DIFFLOSS_NAME}.')
    assert not osp.exists(tmp_path / 'swapped')


def test_the_report_gives_the_iterations_of_the_checkpoints_evaluated(compared):
    root, _ = compared
    demo_iters = load_options('options/train/demo/train_EDSR_x4_demo_diffloss.yml')['train']['total_iter']
    assert yaml.safe_load(open(root / 'options' / 'train_tiny_diffloss.yml'))['train']['total_iter'] == demo_iters != 2
    report = open(root / 'report' / 'report.md').read()  # trained with --iters 2
    assert '- iterations (of the checkpoints evaluated): baseline 2, +DiffLoss 2; seed: 0' in report
