"""Every option file under options/ trains one iteration (train files) or tests once (test files) on tiny data.

The data are tiny stand-ins laid out exactly as each dataset is after datasets/README.md's preparation
(tests/dataset_layouts.py); priors are tiny random diffusers UNets written at the paths the files name; networks are
shrunk and iterations cut through the loaded option dict, touching only keys the file already has, so a renamed key
or a missing file fails. Train files run first (prior trainings before the restorers that use their priors), then
test files, which load the checkpoints the train files wrote. All files run in one subprocess
(tests/option_file_driver.py) to pay for the imports once.
"""
import glob
import json
import os
import subprocess
import sys
from os import path as osp

import pytest
import torch
import yaml

from basicsr_diffloss.priors import DiffusionPrior
from conftest import REPO, TINY_UNET, write_options
from dataset_layouts import build_datasets
from pretrained_stand_ins import write_network_checkpoint, write_random_vgg19
from stable_diffusion_stand_ins import tiny_pipeline

OPTION_FILES = sorted(osp.relpath(path, REPO) for path in glob.glob(osp.join(REPO, 'options', '**', '*.yml'),
                                                                   recursive=True))
# Baselines are named *_baseline.yml; the demo's is *_l1.yml (L1 only).
BASELINE_SETTINGS = ('baseline', 'l1')
# +DiffLoss files without a baseline twin, and why.
UNPAIRED = {
    'options/train/paper/train_EDSR_x4_paper_diffloss.yml': "the paper's loss settings on EDSR, a study rather than a "
                                                             'task; compare with the SRx4 baseline',
    'options/train/SRx4/train_EDSR_SRx4_sd21_diffloss.yml': 'the SD 2.1-base prior; compare with '
                                                            'train_EDSR_SRx4_baseline.yml',
    'options/train/ColorDNsigma25/train_RIDNet_ColorDNsigma25_sd21_diffloss.yml':
        'the SD 2.1-base prior; compare with train_RIDNet_ColorDNsigma25_baseline.yml',
}
TINY_TRAIN_SIZE = 32
BROKEN_SOURCE = 'options/train/SRx4/train_EDSR_SRx4_baseline.yml'
BROKEN = 'a copy of train_EDSR_SRx4_baseline.yml naming a missing LMDB'  # a run that must fail
# Pretrained weights the option files start from (Real-ESRGAN's ESRGAN / Real-ESRNet, VGG19 for perceptual losses):
# random stand-ins are written there when a file names them.
PRETRAINED_DIR = 'experiments/pretrained_models'
# The pixel loss's log key: SRModel's, and that of the GAN models (ESRGANModel, RealESRGANModel).
PIXEL_KEYS = ('l_pix', 'l_g_pix')
# Tiny settings per network type; NAFNet's stage lists and the UNet's channel lists keep their lengths.
SHRINK = {
    'EDSR': lambda net: dict(num_feat=8, num_block=1),
    'SwinIR': lambda net: dict(embed_dim=12, depths=[1], num_heads=[2]),
    'RIDNet': lambda net: dict(mid_channels=16, num_block=1),  # channel attention squeezes 16x,
    'NAFNet': lambda net: dict(width=8, middle_blk_num=1, enc_blk_nums=[1] * len(net['enc_blk_nums']),
                               dec_blk_nums=[1] * len(net['dec_blk_nums'])),
    'IAT': lambda net: {},  # 91k parameters: already small
    'UNet2DModel': lambda net: dict(block_out_channels=[8] + [16] * (len(net['block_out_channels']) - 1),
                                    norm_num_groups=4, attention_head_dim=8),
}
SHRINK['NAFNetLocal'] = SHRINK['NAFNet']
SHRINK.update(RRDBNet=lambda net: dict(num_feat=8, num_block=1, num_grow_ch=4),
              UNetDiscriminatorSN=lambda net: dict(num_feat=8))


def load(relative_path):
    with open(osp.join(REPO, relative_path)) as f:
        return yaml.safe_load(f)


def kind_of(relative_path):
    for kind in ('train', 'test'):
        if relative_path.startswith(f'options/{kind}/'):
            return kind
    raise ValueError(f'{relative_path} is neither under options/train/ nor options/test/.')


def set_existing(options, where, **values):
    """Set keys the option dict already has; a missing one (renamed, or dropped from the file) is an error."""
    for key, value in values.items():
        if key not in options:
            raise KeyError(f"{where}: the option '{key}' is missing from the file.")
        options[key] = value


def prior_trainings(opts):
    """The experiment names of the files that train a prior (their exported priors need no stand-in)."""
    return {opt['name'] for opt in opts.values() if opt['model_type'] == 'DiffusionPriorModel'}


def place_tiny_prior(prior, trained_names, notes):
    """Write a tiny random diffusers UNet where ``prior`` looks for its weights (a guided-diffusion .pt checkpoint
    is stood in for by a diffusers folder beside it)."""
    pretrained = prior.get('pretrained')
    if pretrained is None:
        return
    parts = osp.normpath(pretrained).split(os.sep)
    if len(parts) > 1 and parts[0] == 'experiments' and parts[1] in trained_names:
        return
    if prior.pop('guided_diffusion', None) is not None:
        pretrained = prior['pretrained'] = f'{pretrained}.tiny_diffusers'
        notes.append('guided-diffusion checkpoint stood in for by a tiny diffusers folder')
    if osp.isdir(pretrained):
        return
    if 'stable-diffusion' in osp.basename(pretrained):  # a Stable Diffusion pipeline folder of the same family
        family = 'sdxl' if 'xl' in osp.basename(pretrained) else 'sd2' if '-2-' in osp.basename(pretrained) else 'sd1'
        tiny_pipeline(family, pretrained, prediction_type='v_prediction' if '768' in pretrained else 'epsilon')
        notes.append(f'{pretrained}: a tiny random {family} pipeline')
        return
    torch.manual_seed(0)
    DiffusionPrior(unet=dict(TINY_UNET)).unet.save_pretrained(pretrained)


def place_pretrained_networks(opt, notes):
    """Random checkpoints of the (shrunk) networks at the ``experiments/pretrained_models`` paths ``path`` names, and
    random VGG19 weights where BasicSR's perceptual loss looks for them."""
    for net in ('g', 'd'):
        path = (opt.get('path') or {}).get(f'pretrain_network_{net}')
        if path and osp.normpath(path).startswith(osp.normpath(PRETRAINED_DIR) + os.sep) and not osp.isfile(path):
            write_network_checkpoint(opt[f'network_{net}'], path, opt['path'].get(f'param_key_{net}'))
            notes.append(f'{path}: random weights')
    if (opt.get('train') or {}).get('perceptual_opt'):
        from basicsr.archs.vgg_arch import VGG_PRETRAIN_PATH
        if not osp.isfile(VGG_PRETRAIN_PATH):
            write_random_vgg19(VGG_PRETRAIN_PATH)
        notes.append(f'{VGG_PRETRAIN_PATH}: random VGG19 weights')


def tiny_options(opt, kind, trained_names, where):
    """The option dict cut down to seconds on a CPU; returns notes on what was substituted."""
    notes = []
    set_existing(opt, where, num_gpu=0)
    for key in ('network_g', 'network_d'):
        network = opt.get(key)
        if network is None:
            continue
        if network['type'] in SHRINK:
            set_existing(network, f'{where} {key}', **SHRINK[network['type']](network))
        else:
            notes.append(f"network {network['type']} has no SHRINK rule and runs at full size")
    if 'gt_size' in opt:  # the patch that Real-ESRGAN's models crop from their synthesised pairs
        opt['gt_size'] = TINY_TRAIN_SIZE
    for name, dataset in opt['datasets'].items():
        if name.startswith('train'):
            set_existing(dataset, f'{where} datasets.{name}', gt_size=TINY_TRAIN_SIZE, batch_size_per_gpu=2,
                         num_worker_per_gpu=0)
    if kind == 'train':
        set_existing(opt['train'], f'{where} train', total_iter=1)
        if 'val' in opt:
            set_existing(opt['val'], f'{where} val', val_freq=2)  # only the validation after the last iteration
        set_existing(opt['logger'], f'{where} logger', print_freq=1, save_checkpoint_freq=1)
        opt['logger']['use_tb_logger'] = False
        diffusion = opt['train'].get('diffusion_opt')
        if diffusion:
            place_tiny_prior(diffusion['prior'], trained_names, notes)
            if (diffusion.get('crop_size') or 0) > TINY_TRAIN_SIZE:  # DiffLoss crops within the training patch
                diffusion['crop_size'] = TINY_TRAIN_SIZE
        place_pretrained_networks(opt, notes)
    return notes


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    """Every option file run once; maps each file to its result (ok, error, log, seconds, notes, opt)."""
    root = tmp_path_factory.mktemp('option_files')
    build_datasets(root)
    opts = {path: load(path) for path in OPTION_FILES}
    trained_names = prior_trainings(opts)
    order = sorted(OPTION_FILES, key=lambda path: (kind_of(path) == 'test', opts[path]['model_type'] !=
                                                   'DiffusionPriorModel', path))
    plan, prepared = [], {}
    (root / 'tiny_options').mkdir()
    cwd = os.getcwd()
    os.chdir(root)  # option files name their data and priors relative to the run directory
    try:
        for path in order:
            try:
                notes = tiny_options(opts[path], kind_of(path), trained_names, path)
            except (KeyError, ValueError) as error:
                prepared[path] = dict(ok=False, error=f'preparing the tiny run: {error}', log='', notes=[])
                continue
            run_file = write_options(opts[path], root / 'tiny_options' / path.replace('/', '__'))
            plan.append(dict(option_file=path, run_file=run_file, kind=kind_of(path)))
            prepared[path] = dict(notes=notes)
        broken = load(BROKEN_SOURCE)  # the harness must notice a file whose data are missing
        tiny_options(broken, 'train', trained_names, BROKEN)
        broken['name'] += '_broken'
        broken['datasets']['train']['dataroot_gt'] = 'datasets/DIV2K/missing.lmdb'
        plan.append(dict(option_file=BROKEN, run_file=write_options(broken, root / 'tiny_options' / 'broken.yml'),
                         kind='train'))
    finally:
        os.chdir(cwd)
    with open(root / 'plan.json', 'w') as f:
        json.dump(plan, f)
    subprocess.run([sys.executable, osp.join(REPO, 'tests', 'option_file_driver.py'), 'plan.json', 'results.json'],
                   cwd=root, capture_output=True, text=True, timeout=540)
    results = json.load(open(root / 'results.json')) if osp.isfile(root / 'results.json') else {}
    for path in OPTION_FILES:
        prepared[path] = dict(results.get(path, dict(ok=False, error='the driver never reached it', log='')),
                              **prepared[path])
        prepared[path]['opt'] = opts[path]
    prepared[BROKEN] = results.get(BROKEN)
    return root, prepared


def test_every_option_file_is_found_and_run(runs):
    _, results = runs
    assert len(OPTION_FILES) >= 37
    assert set(results) == set(OPTION_FILES) | {BROKEN}
    assert any(kind_of(path) == 'test' for path in OPTION_FILES)


def test_missing_data_and_renamed_keys_fail(runs):
    _, results = runs
    assert results[BROKEN] is not None and not results[BROKEN]['ok']
    assert 'missing.lmdb' in results[BROKEN]['error']
    renamed = load(BROKEN_SOURCE)
    renamed['datasets']['train']['patch_size'] = renamed['datasets']['train'].pop('gt_size')
    with pytest.raises(KeyError, match="'gt_size' is missing"):
        tiny_options(renamed, 'train', set(), BROKEN_SOURCE)


@pytest.mark.parametrize('option_file', OPTION_FILES)
def test_option_file_runs_on_tiny_data(runs, option_file):
    root, results = runs
    result = results[option_file]
    assert result['ok'], f"{option_file} failed:\n{result['error']}\n{result['log'][-3000:]}"
    opt, log = result['opt'], result['log']
    if kind_of(option_file) == 'train':
        assert osp.isfile(root / 'experiments' / opt['name'] / 'models' / 'net_g_latest.pth')
        if opt['model_type'] != 'DiffusionPriorModel':
            assert any(f'{key}: ' in log for key in PIXEL_KEYS)
            if opt['train'].get('diffusion_opt'):
                model_type = opt['model_type']
                built = model_type if model_type.startswith('DiffLoss') else f'DiffLoss{model_type}'
                assert 'l_diff_eps' in log and f'Model [{built}] is created.' in log
            else:
                assert f"Model [{opt['model_type']}] is created." in log
            if 'val' in opt:  # Real-ESRGAN's files have none
                assert '# psnr' in log
    else:
        for dataset in opt['datasets'].values():
            assert f"Validation {dataset['name']}" in log
        assert log.count('# psnr') == len(opt['datasets'])


def train_pairs():
    """(baseline, diffloss) paths of every option-file pair under options/train."""
    pairs = []
    for path in OPTION_FILES:
        if kind_of(path) != 'train' or not path.endswith('_diffloss.yml'):
            continue
        twins = [path[:-len('diffloss.yml')] + f'{setting}.yml' for setting in BASELINE_SETTINGS]
        found = [twin for twin in twins if twin in OPTION_FILES]
        pairs.append((found[0] if found else None, path))
    return pairs


@pytest.mark.parametrize('baseline, diffloss', train_pairs())
def test_pair_differs_only_in_name_and_diffusion_opt(baseline, diffloss):
    if baseline is None:
        assert diffloss in UNPAIRED, f'{diffloss} has no baseline twin (*_baseline.yml)'
        return
    base, diff = load(baseline), load(diffloss)
    assert base['model_type'] == diff['model_type']  # train.diffusion_opt alone adds the term
    assert 'diffusion_opt' not in base['train'] and diff['train'].get('diffusion_opt', {}).get('type') == 'DiffLoss'
    assert base['name'] != diff['name']
    for opt in (base, diff):
        opt.pop('name')
        opt['train'].pop('diffusion_opt', None)
    assert base == diff


def test_every_baseline_has_a_diffloss_twin():
    baselines = {baseline for baseline, _ in train_pairs() if baseline}
    lonely = [path for path in OPTION_FILES if path.endswith('_baseline.yml') and path not in baselines]
    assert not lonely
