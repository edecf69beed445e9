"""Exact resume, determinism and 2-process DDP (gloo, CPU) through BasicSR's train pipeline."""
import glob
import json
import os
import re
import subprocess
import sys
from os import path as osp

import pytest
import torch

from basicsr_diffloss.priors import DiffusionPrior
from conftest import REPO, TINY_UNET, load_options, write_options, write_paired_split

LOSS_LINE = re.compile(r'iter:\s+(\d+), lr:.*?\] (l_pix: .*)$', re.M)


@pytest.fixture(scope='module')
def workspace(tmp_path_factory):
    """Tiny demo-layout data and a tiny prior, shared by the runs below."""
    root = tmp_path_factory.mktemp('reliability')
    write_paired_split(root / 'datasets' / 'demo', 'train', count=4, size=32, seed=0)
    torch.manual_seed(0)
    DiffusionPrior(unet=dict(TINY_UNET)).unet.save_pretrained(root / 'prior')
    return root


def tiny_options(root, name, diffusion=True, deterministic_data=False, batch=2, **diffusion_options):
    opt = load_options('options/train/demo/train_EDSR_x4_demo_diffloss.yml')
    opt['name'] = name
    opt['network_g'].update(num_feat=8, num_block=1)
    opt['datasets'].pop('val')
    opt.pop('val')
    opt['datasets']['train'].update(gt_size=32 if deterministic_data else 16, batch_size_per_gpu=batch,
                                    use_hflip=not deterministic_data, use_rot=not deterministic_data)
    opt['train']['total_iter'] = 4
    opt['logger'].update(print_freq=1, save_checkpoint_freq=2)
    if diffusion:
        # the stopped run ends early through total_iter, which would move start_iter auto's join (tests/
        # test_backoff_and_start.py resumes auto exactly)
        diffusion_options.setdefault('start_iter', 0)
        if 'strength' in diffusion_options:  # the weights come from the strength, not from the demo's absolute ones
            for option in ('eps_weight', 'h_weight'):
                opt['train']['diffusion_opt'].pop(option, None)
        opt['train']['diffusion_opt'].update(prior={'type': 'DiffusionPrior', 'pretrained': str(root / 'prior')},
                                             crop_size=16, **diffusion_options)
    else:
        opt['train'].pop('diffusion_opt')
    return write_options(opt, root / f'{name}.yml')


def final_weights(root, name):
    return torch.load(root / 'experiments' / name / 'models' / 'net_g_4.pth', map_location='cpu')['params']


STRENGTH = dict(strength={'eps': 1.0, 'h': 0.25}, strength_iters=3)
# name -> DiffLoss options of each pair of runs: one straight through 4 iterations, one stopped after 2 and resumed.
RESUMED_PAIRS = {'': {}, 'strength_fixed_': dict(strength_update='fixed', **STRENGTH),
                 'strength_tracked_': dict(strength_update='tracked', **STRENGTH)}


def run_in_one_interpreter(root, runs):
    """``runs`` (``[name, option file, *arguments]``) trained one after the other by tests/option_file_driver.py in one
    fresh interpreter (one import for all); each run's log (the 'basicsr' logger's lines)."""
    plan = [dict(option_file=name, run_file=option_file, kind='train', args=args)
            for name, option_file, *args in runs]
    plan_file, results_file = root / f'plan_{runs[0][0]}.json', root / f'results_{runs[0][0]}.json'
    plan_file.write_text(json.dumps(plan))
    process = subprocess.run([sys.executable, osp.join(REPO, 'tests', 'option_file_driver.py'), str(plan_file),
                              str(results_file)], cwd=root, capture_output=True, text=True, timeout=600)
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    for name, *_ in runs:
        if not results.get(name, {}).get('ok'):
            pytest.fail(f"{name} failed:\n{results.get(name, {}).get('error', process.stderr[-3000:])}")
    return {name: result['log'] for name, result in results.items()}


@pytest.fixture(scope='module')
def resumed(workspace):
    """Every pair of ``RESUMED_PAIRS`` and a second straight run (``again``) trained in one interpreter, then the
    stopped runs resumed in another (a fresh process, as a user's resume is); maps each run to its logged losses
    per iteration, and each resumed run (``<prefix>resumed``) to its log."""
    first, second = [['again', tiny_options(workspace, 'again')]], []
    for prefix, options in RESUMED_PAIRS.items():
        stopped = tiny_options(workspace, f'{prefix}stopped', **options)
        first += [[f'{prefix}straight', tiny_options(workspace, f'{prefix}straight', **options)],
                  [f'{prefix}stopped', stopped, '--force_yml', 'train:total_iter=2']]
        second.append([f'{prefix}resumed', stopped, '--auto_resume'])
    logs = dict(run_in_one_interpreter(workspace, first), **run_in_one_interpreter(workspace, second))
    losses = {name: {int(it): line.strip() for it, line in LOSS_LINE.findall(log)} for name, log in logs.items()}
    for prefix in RESUMED_PAIRS:  # the stopped run's iterations 1-2, then the resumed run's 3-4
        losses[f'{prefix}stopped'].update(losses.pop(f'{prefix}resumed'))
    return losses, {name: log for name, log in logs.items() if name.endswith('resumed')}


def assert_resumed_equals_straight(workspace, resumed, prefix):
    losses, _ = resumed
    straight, stopped = losses[f'{prefix}straight'], losses[f'{prefix}stopped']
    print('\n' + '\n'.join(f'iter {i}: straight {straight[i]} | resumed {stopped[i]}' for i in (3, 4)))
    assert sorted(stopped) == [1, 2, 3, 4]
    assert straight[3] == stopped[3] and straight[4] == stopped[4]
    assert straight[3] != straight[1]
    weights_straight = final_weights(workspace, f'{prefix}straight')
    weights_resumed = final_weights(workspace, f'{prefix}stopped')
    for name, value in weights_straight.items():
        assert torch.equal(value, weights_resumed[name]), name


def test_resumed_run_matches_an_uninterrupted_one(workspace, resumed):
    assert 'Resume: epoch 0 continues after its first 2 batches.' in resumed[1]['resumed']
    assert_resumed_equals_straight(workspace, resumed, '')
    # Checkpoints are written atomically: no partial file is left behind.
    assert not glob.glob(str(workspace / 'experiments' / '*' / '*' / '*.partial'))


@pytest.mark.parametrize('update', ['fixed', 'tracked'])
def test_resume_in_the_middle_of_the_strength_calibration_matches_an_uninterrupted_run(workspace, resumed, update):
    # measured over iterations 1-3 (two before the stop, one after); tracked: iteration 4 is measured too
    prefix = f'strength_{update}_'
    assert ('tracked from now on' if update == 'tracked' else 'fixed from now on') in resumed[1][f'{prefix}resumed']
    assert_resumed_equals_straight(workspace, resumed, prefix)


def test_two_runs_with_the_same_seed_log_identical_losses(resumed):
    losses, _ = resumed
    assert losses['again'] == losses['straight'] and sorted(losses['again']) == [1, 2, 3, 4]


def start_driver(root, option_file, processes):
    """tests/ddp_driver.py on ``option_file`` in ``root``: one process, or ``processes`` ranks under torchrun."""
    launcher = [sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={processes}'] \
        if processes > 1 else [sys.executable]
    extra = ['--launcher', 'pytorch'] if processes > 1 else []
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([osp.join(REPO, 'tests'), os.environ.get('PYTHONPATH', '')]),
               OMP_NUM_THREADS='1')
    return subprocess.Popen([*launcher, osp.join(REPO, 'tests', 'ddp_driver.py'), '-opt', option_file, *extra],
                            cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def relative_difference(a, b, reference):
    diff = sum((a[k] - b[k]).pow(2).sum() for k in a).sqrt()
    return (diff / sum((b[k] - reference[k]).pow(2).sum() for k in b).sqrt()).item()


def train_side_by_side(workspace, *runs):
    """Each run ``(folder, processes, batch, diffusion, diffusion options)`` trained by tests/ddp_driver.py, all
    started together (the interpreters' imports overlap, as in run_modules_side_by_side); each run's saved ranks."""
    started = []
    for folder, processes, batch, diffusion, diffusion_options in runs:
        folder.mkdir()
        os.symlink(workspace / 'datasets', folder / 'datasets')
        option_file = tiny_options(workspace, folder.name, diffusion, deterministic_data=True, batch=batch,
                                   **diffusion_options)
        started.append((folder, start_driver(folder, option_file, processes)))
    trained = []
    for folder, process in started:
        stdout, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stdout[-3000:] + stderr[-3000:]
        trained.append([torch.load(path) for path in sorted(glob.glob(str(folder / 'rank*.pth')))])
    return trained


# name -> (processes, batch per process, DiffLoss on, DiffLoss options) of the runs the DDP tests compare
DDP_RUNS = {
    'ddp_l1': (2, 2, False, {}), 'single_l1': (1, 4, False, {}),
    'ddp': (2, 2, True, {}), 'single': (1, 4, True, {}), 'single_other_draws': (1, 4, True, dict(seed=12345)),
    'ddp_strength_fixed': (2, 2, True, dict(strength_update='fixed', **STRENGTH)),
    'ddp_strength_tracked': (2, 2, True, dict(strength_update='tracked', **STRENGTH)),
}


@pytest.fixture(scope='module')
def ddp_runs(workspace, tmp_path_factory):
    """Every run of ``DDP_RUNS`` trained side by side; each run's saved ranks."""
    root = tmp_path_factory.mktemp('ddp')
    trained = train_side_by_side(workspace, *[(root / name, *run) for name, run in DDP_RUNS.items()])
    return dict(zip(DDP_RUNS, trained))


def test_two_gloo_processes_train_the_same_network_as_one(ddp_runs):
    """L1 alone, same global batch (2 processes x 2 against 1 x 4): the runs agree to float rounding."""
    ranks, (single, ) = ddp_runs['ddp_l1'], ddp_runs['single_l1']
    for name, value in ranks[0]['net_g'].items():
        assert torch.equal(value, ranks[1]['net_g'][name]), name
        assert torch.equal(ranks[0]['initial'][name], single['initial'][name]), name
    error = relative_difference(ranks[0]['net_g'], single['net_g'], single['initial'])
    print(f'\nL1: |w_ddp - w_single| / |w_single - w_init| = {error:.2e}')
    assert error < 1e-4


def test_ddp_with_diffloss_differs_from_one_process_only_by_its_noise(ddp_runs):
    """DiffLoss draws different noise and t on each rank by design, so a 2-process run cannot equal a 1-process one.
    It must be as close to it as two 1-process runs whose DiffLoss draws differ (other seed)."""
    ranks, (single, ), (other_draws, ) = ddp_runs['ddp'], ddp_runs['single'], ddp_runs['single_other_draws']
    assert ranks[0]['diffloss_seed'] != ranks[1]['diffloss_seed']
    for name, value in ranks[0]['net_g'].items():
        assert torch.equal(value, ranks[1]['net_g'][name]), name
    error = relative_difference(ranks[0]['net_g'], single['net_g'], single['initial'])
    spread = relative_difference(other_draws['net_g'], single['net_g'], single['initial'])
    print(f'\nL1 + DiffLoss: |w_ddp - w_single| / |w_single - w_init| = {error:.2e}; '
          f'between two single runs with other draws: {spread:.2e}')
    assert error < 2 * spread


@pytest.mark.parametrize('update', ['fixed', 'tracked'])
def test_ddp_ranks_calibrate_the_same_strength_weights_from_their_different_draws(ddp_runs, update):
    ranks = ddp_runs[f'ddp_strength_{update}']
    assert ranks[0]['diffloss_seed'] != ranks[1]['diffloss_seed']  # each rank draws its own noise and t
    weights = [rank['diffloss_strength_weights'] for rank in ranks]
    print(f'\nstrength weights per rank: {weights}')
    assert weights[0] == weights[1] and set(weights[0]) == {'l_diff_eps', 'l_diff_h'}
    assert all(weight > 0 for weight in weights[0].values())


def test_a_crash_while_saving_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    from basicsr_diffloss.models import atomic_torch_save
    path = tmp_path / 'net_g_latest.pth'
    torch.save({'params': torch.ones(3)}, path)
    real_save = torch.save

    def crash_half_way(obj, f, *args, **kwargs):
        with open(f, 'wb') as handle:
            handle.write(b'half a checkpoint')
        raise OSError('disk full')

    monkeypatch.setattr(torch, 'save', crash_half_way)
    with pytest.raises(OSError, match='disk full'), atomic_torch_save():
        torch.save({'params': torch.zeros(3)}, path)
    monkeypatch.setattr(torch, 'save', real_save)
    assert torch.equal(torch.load(path)['params'], torch.ones(3))
