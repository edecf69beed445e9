"""Every user mistake of issue 22 is refused at start-up with one line naming the option or file, the value and the
fix (a warning where the run is legitimate but surprising), and the commands print it without a traceback unless
``--debug``. Run with ``-s`` to see each message."""
import itertools
import logging
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

import basicsr.train
from basicsr.models import build_model
from basicsr_diffloss.commands import convert_adm, inspect_prior
from basicsr_diffloss.options import UserError
from basicsr_diffloss.priors import DiffusionPrior
from conftest import TINY_UNET, run_in, run_module, tiny_demo_run, write_options
from test_guided_diffusion import CONFIGS, random_reference, save_checkpoint
from test_models import batch, model_options


@pytest.fixture(scope='module')
def workspace(tmp_path_factory):
    """Tiny demo data, a tiny prior and the demo's +DiffLoss options (2 iterations, a state at each)."""
    root = tmp_path_factory.mktemp('user_errors')
    opt = tiny_demo_run(root, val_count=1, val_size=64)
    opt['val']['metrics'].pop('niqe')
    opt['train']['total_iter'] = 2
    opt['logger'].update(print_freq=1, save_checkpoint_freq=1)
    return root, opt


def start(root, opt, *argv, name='errors'):
    """Run the train pipeline in this process on ``opt`` (saved as ``root/<name>.yml``) with ``argv``."""
    option_file = write_options(dict(opt, name=name), root / f'{name}.yml')
    saved = sys.argv
    sys.argv = ['basicsr-diffloss-train', '-opt', option_file, *argv]
    try:
        run_in(root, basicsr.train.train_pipeline, str(root))
    finally:
        sys.argv = saved


RUNS = itertools.count()  # each start gets its own experiment folder (BasicSR archives one that exists)


def refused(root, opt, *argv, name=None):
    """The one-line message of the UserError that starting ``opt`` raises."""
    name = name or f'errors{next(RUNS)}'
    with pytest.raises(UserError) as caught:
        start(root, opt, *argv, name=name)
    message = str(caught.value)
    print(f'\n{message}')
    assert '\n' not in message
    return message


def edited(opt, edit):
    opt = {key: (dict(value) if isinstance(value, dict) else value) for key, value in opt.items()}
    opt['train'] = {key: (dict(value) if isinstance(value, dict) else value) for key, value in opt['train'].items()}
    edit(opt)
    return opt


# ---------------------------------------------------------------------------------------------------------------------
# Misplaced or misspelt keys


def test_a_top_level_diffusion_opt_is_refused(workspace):
    root, opt = workspace
    message = refused(root, edited(opt, lambda o: o.update(diffusion_opt=o['train'].pop('diffusion_opt'))))
    assert message.startswith("Option 'diffusion_opt' is at the top level") and "'train.diffusion_opt'" in message


def test_a_misspelt_train_key_names_the_nearest(workspace):
    root, opt = workspace
    message = refused(root, edited(opt, lambda o: o['train'].update(diffusion_opts=o['train'].pop('diffusion_opt'))))
    assert message == ("Option 'train.diffusion_opts' is not an option that BasicSR or this package reads: did you "
                       "mean 'train.diffusion_opt'?")


def test_a_diffloss_model_type_without_diffusion_opt_is_refused(workspace):
    root, opt = workspace
    message = refused(root, edited(opt, lambda o: (o['train'].pop('diffusion_opt'),
                                                   o.update(model_type='DiffLossSRModel'))))
    assert message.startswith('model_type DiffLossSRModel without train.diffusion_opt trains SRModel alone')


@pytest.mark.parametrize('entry, expected', [
    ('train:total_itre=5', "--force_yml entry 'train:total_itre=5': 'train.total_itre' is not an option that BasicSR "
     "or this package reads: did you mean 'train.total_iter'?"),
    ('trian:total_iter=5', "--force_yml entry 'trian:total_iter=5': the option file has no section 'trian': did you "
     "mean 'train'?"),
    ('train:diffusion_opt:prior:dtpye=bf16', "train.diffusion_opt.prior option 'dtpye': 'bf16' is not an option of "
     "DiffusionPrior: did you mean 'dtype'?"),
])
def test_force_yml_paths_are_checked(workspace, entry, expected):
    root, opt = workspace
    assert refused(root, opt, '--force_yml', entry) == expected


def finished(process):
    out, err = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def test_the_command_prints_one_line_and_the_traceback_only_with_debug(workspace):
    root, opt = workspace
    option_file = write_options(dict(opt, name='one_line'), root / 'one_line.yml')
    command = [sys.executable, '-m', 'basicsr_diffloss.train', '-opt', option_file, '--force_yml',
               'trian:total_iter=5']
    started = [subprocess.Popen(argv, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for argv in (command, command + ['--debug'])]  # side by side: each spends seconds importing
    plain, debug = (finished(process) for process in started)
    print('\n' + plain.stderr)
    assert plain.returncode == 1 and 'Traceback' not in plain.stderr
    assert plain.stderr.strip().splitlines()[-1] == (
        "basicsr-diffloss-train: error: --force_yml entry 'trian:total_iter=5': the option file has no section "
        "'trian': did you mean 'train'?")
    assert debug.returncode == 1 and 'Traceback' in debug.stderr and 'OptionError' in debug.stderr


# ---------------------------------------------------------------------------------------------------------------------
# Resume


@pytest.fixture(scope='module')
def trained(workspace):
    """A finished 2-iteration run with states 1.state and 2.state."""
    root, opt = workspace
    start(root, opt, name='trained')
    return root, opt, root / 'experiments' / 'trained'


def test_auto_resume_skips_a_truncated_newest_state(trained):
    root, opt, experiment = trained
    copy = root / 'experiments' / 'truncated'
    shutil.copytree(experiment, copy)
    newest = copy / 'training_states' / '2.state'
    newest.write_bytes(newest.read_bytes()[:1000])
    option_file = write_options(dict(opt, name='truncated'), root / 'truncated.yml')
    run_module('basicsr_diffloss.train', '-opt', option_file, '--auto_resume', '--force_yml', 'train:total_iter=3',
               cwd=root)
    log = ''.join(open(copy / name).read() for name in sorted(os.listdir(copy)) if name.startswith('train_'))
    skipped = next(line for line in log.splitlines() if '--auto_resume: skipped' in line)
    print('\n' + skipped)
    assert f"--auto_resume: skipped '{newest}': it is truncated or not a torch file (" in skipped
    assert 'Resuming training from epoch: 0, iter: 1.' in log


@pytest.mark.parametrize('case', ['empty', 'network', 'other experiment'])
def test_a_resume_state_that_cannot_be_resumed_is_named(trained, case):
    root, opt, experiment = trained
    if case == 'empty':
        path = root / 'empty.state'
        path.write_bytes(b'')
        expected = f"path.resume_state: '{path}' cannot be resumed from: it is empty (0 bytes)."
    elif case == 'network':
        path = experiment / 'models' / 'net_g_2.pth'
        expected = (f"path.resume_state: '{path}' cannot be resumed from: it holds network weights (a net_g_*.pth), "
                    'not a training state')
    else:
        path = experiment / 'training_states' / '2.state'
        expected = (f"path.resume_state: '{path}' cannot be resumed from: it is a state of experiment 'trained' and "
                    "this run is named 'elsewhere'")
    message = refused(root, dict(opt, path=dict(opt['path'], resume_state=str(path))), name='elsewhere')
    assert message.startswith(expected)


# ---------------------------------------------------------------------------------------------------------------------
# Data


def data_copy(root, name):
    folder = root / name
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(root / 'datasets' / 'demo' / 'train', folder)
    return folder


def with_train_data(opt, folder):
    return dict(opt, datasets=dict(opt['datasets'], train=dict(opt['datasets']['train'], dataroot_gt=str(folder / 'gt'),
                                                                dataroot_lq=str(folder / 'lq_x4'))))


def test_an_empty_data_folder_is_named(workspace):
    root, opt = workspace
    folder = root / 'empty_data'
    (folder / 'gt').mkdir(parents=True, exist_ok=True)
    (folder / 'lq_x4').mkdir(exist_ok=True)
    message = refused(root, with_train_data(opt, folder))
    assert message.startswith('datasets.train (demo_train, PairedImageDataset): no images in ') and \
        str(folder / 'gt') in message


def test_a_file_that_is_no_image_is_named(workspace):
    root, opt = workspace
    folder = data_copy(root, 'text_data')
    for sub in ('gt', 'lq_x4'):
        (folder / sub / 'notes.txt').write_text('not an image')
    message = refused(root, with_train_data(opt, folder))
    assert f"'{folder / 'gt' / 'notes.txt'}' is not an image" in message


def test_a_scale_mismatch_names_the_pair(workspace):
    root, opt = workspace
    folder = data_copy(root, 'mismatch_data')
    lq = folder / 'lq_x4' / sorted(os.listdir(folder / 'lq_x4'))[0]
    cv2.imwrite(str(lq), np.zeros((10, 12, 3), np.uint8))
    message = refused(root, with_train_data(opt, folder))
    assert f"but LQ '{lq}' is 12x10, which at scale 4 needs a GT of 48x40" in message


def test_a_batch_larger_than_the_training_set_is_refused(workspace):
    root, opt = workspace
    opt = edited(opt, lambda opt: opt['datasets'].update(
        train=dict(opt['datasets']['train'], dataset_enlarge_ratio=1, batch_size_per_gpu=4)))
    message = refused(root, opt)
    assert message.startswith('datasets.train.batch_size_per_gpu: 4 is more than the 3 training images')
    assert 'set batch_size_per_gpu to 3 or less' in message


# ---------------------------------------------------------------------------------------------------------------------
# The commands' arguments


@pytest.mark.parametrize('argv, expected', [
    (['--size', '0'], "argument --size: '0' is not a positive integer"),
    (['--max_images', '0'], "argument --max_images: '0' is not a positive integer"),
    (['--batch_size', '0'], "argument --batch_size: '0' is not a positive integer"),
    (['--timesteps', 'abc'], "argument --timesteps: 'abc' is not a comma-separated list of integers"),
])
def test_inspect_prior_arguments_are_checked(tmp_path, capsys, argv, expected):
    with pytest.raises(SystemExit):
        inspect_prior.main(['--prior', 'default', '--images', str(tmp_path), *argv])
    message = capsys.readouterr().err.strip().splitlines()[-1]
    print('\n' + message)
    assert expected in message


def test_inspect_prior_names_its_own_flags(tmp_path, tiny_prior_folder):
    with pytest.raises(SystemExit) as caught:
        inspect_prior.main(['--prior', str(tmp_path / 'missing'), '--images', str(tmp_path)])
    print(f'\n{caught.value}')
    assert str(caught.value).startswith(f"basicsr-diffloss-inspect-prior: error: --prior: '{tmp_path / 'missing'}' "
                                        'is not a folder.')
    assert "'pretrained'" not in str(caught.value)
    small = tmp_path / 'small.png'
    cv2.imwrite(str(small), np.zeros((20, 20, 3), np.uint8))
    with pytest.raises(SystemExit) as caught:
        inspect_prior.main(['--prior', str(tiny_prior_folder), '--images', str(tmp_path), '--crop', 'random',
                            '--size', '32'])
    print(caught.value)
    assert f"--crop random: '{small}' is 20x20, smaller than --size 32" in str(caught.value)
    # refused before the prior is loaded, not after the whole measurement (it crashed at the end before)
    with pytest.raises(SystemExit) as caught:
        inspect_prior.main(['--prior', str(tmp_path / 'missing'), '--images', str(tmp_path), '--output', 'grid'])
    assert str(caught.value) == ("basicsr-diffloss-inspect-prior: error: --output: 'grid' is where the grid of x0 "
                                 'predictions is written and needs an image extension: give a path ending in .png '
                                 '(e.g. --output inspect_prior_x0.png).')


def test_convert_adm_checks_its_paths_and_replaces_only_with_overwrite(tmp_path, capsys):
    text = tmp_path / 'notes.pt'
    text.write_text('not a checkpoint')
    for checkpoint, expected in ((text, 'is not a torch checkpoint'), (tmp_path / 'missing.pt', 'is not a file')):
        with pytest.raises(SystemExit) as caught:
            convert_adm.main(['--checkpoint', str(checkpoint), '--output', str(tmp_path / 'out')])
        print(f'\n{caught.value}')
        assert f"basicsr-diffloss-convert-adm: error: --checkpoint: '{checkpoint}' {expected}" in str(caught.value)
    output = tmp_path / 'prior'
    torch.manual_seed(0)
    DiffusionPrior(unet=dict(TINY_UNET)).unet.save_pretrained(output / 'unet')  # an old pipeline-style UNet
    checkpoint = save_checkpoint(random_reference(CONFIGS['legacy_updown_scaleshift_sigma']), tmp_path / 'model.pt')
    argv = ['--checkpoint', checkpoint, '--output', str(output), '--model', '256x256_diffusion_uncond', '--image_size',
            '16', '--num_channels', '32', '--channel_mult', '1,2,2', '--attention_resolutions', '8,4',
            '--num_head_channels', '16']
    with pytest.raises(SystemExit) as caught:
        convert_adm.main(argv)
    print(caught.value)
    assert f"--output: '{output}' exists and holds ['unet']" in str(caught.value) and '--overwrite' in str(caught.value)
    convert_adm.main(argv + ['--overwrite'])
    assert not (output / 'unet').exists()
    converted = sum(p.numel() for p in DiffusionPrior(pretrained=str(output)).unet.parameters())
    assert converted == sum(p.numel() for p in random_reference(CONFIGS['legacy_updown_scaleshift_sigma']).parameters())


# ---------------------------------------------------------------------------------------------------------------------
# Legitimate but surprising: warnings


@pytest.fixture
def warnings_logged():
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger('basicsr')
    logger.addHandler(handler)
    yield lambda: [record.getMessage() for record in records if record.levelno == logging.WARNING]
    logger.removeHandler(handler)


def test_a_random_prior_warns(warnings_logged):
    DiffusionPrior(unet=dict(TINY_UNET))
    warning, = [message for message in warnings_logged() if "'unet'" in message]
    print('\n' + warning)
    assert 'random weights' in warning and 'pretrained: default' in warning


def test_fp16_on_the_cpu_warns(warnings_logged):
    prior = DiffusionPrior(unet=dict(TINY_UNET), dtype='fp16')
    prior(torch.zeros(1, 3, 16, 16), torch.tensor([10]))
    warning, = [message for message in warnings_logged() if "'dtype'" in message]
    print('\n' + warning)
    assert 'fp16 on the CPU' in warning and 'fp32' in warning


def test_loss_weight_zero_warns_that_the_term_is_off_and_the_prior_never_runs(tmp_path, warnings_logged,
                                                                             monkeypatch):
    opt = model_options(tmp_path, 'SRModel')
    opt['train'].update(total_iter=1)  # every training option file has it; DiffLoss reads it
    opt['train']['diffusion_opt']['loss_weight'] = 0
    model = build_model(opt)
    warning, = [message for message in warnings_logged() if 'loss_weight' in message]
    print('\n' + warning)
    assert warning == ('train.diffusion_opt.loss_weight: 0 turns the term off: every diffusion term is 0 and the prior '
                       'never runs, so the run trains with the pixel loss alone; remove train.diffusion_opt for a run '
                       'without the term, or set loss_weight > 0.')
    monkeypatch.setattr(model.cri_diff.prior, 'forward', lambda *args, **kwargs: pytest.fail('the prior ran'))
    model.feed_data(batch())
    model.optimize_parameters(1)
    assert 'l_pix' in model.get_current_log() and 'l_diff_eps' not in model.get_current_log()

