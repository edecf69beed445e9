"""Shared fixtures: tiny priors, tiny restorers and tiny datasets laid out like the demo's."""
import os
import subprocess
import sys
from os import path as osp

import cv2
import numpy as np
import pytest
import torch
import yaml

import basicsr_diffloss  # noqa: F401  (repairs basicsr and registers everything)
from basicsr_diffloss.priors import DiffusionPrior, diffusion_prior_arch

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.join(REPO, 'scripts'))  # the study's modules (scripts/study/) and the benchmark

# Two levels (size factor 2), attention in the lower one: small enough for CPU tests, the same block types as
# real priors.
TINY_UNET = dict(sample_size=16, in_channels=3, out_channels=3, block_out_channels=[8, 16], layers_per_block=1,
                 down_block_types=['DownBlock2D', 'AttnDownBlock2D'], up_block_types=['AttnUpBlock2D', 'UpBlock2D'],
                 norm_num_groups=4, attention_head_dim=8)

# The paper's gradient (through the UNet). The default preset's score_difference has no gradient for the h term, so
# tests of backprop and of the h term ask for it.
BACKPROP = dict(gradient='backprop')


@pytest.fixture
def tiny_unet_config():
    return dict(TINY_UNET)


@pytest.fixture(autouse=True)
def auto_dtype_is_fp32(monkeypatch):
    """In this process ``dtype: auto`` resolves to fp32 on every CPU (it is bf16 on CPUs with native bf16), so that
    the tests' comparisons with references in float32 hold on any machine; how auto resolves has its own test, and
    training subprocesses run as users' do."""
    monkeypatch.setattr(diffusion_prior_arch, 'native_bf16', lambda device: device.type == 'cuda')


@pytest.fixture
def tiny_prior():
    torch.manual_seed(0)
    return DiffusionPrior(unet=dict(TINY_UNET))


@pytest.fixture
def tiny_prior_folder(tmp_path):
    """A diffusers folder (config.json + safetensors) holding a random tiny prior."""
    torch.manual_seed(0)
    folder = tmp_path / 'tiny_prior'
    DiffusionPrior(unet=dict(TINY_UNET)).unet.save_pretrained(folder)
    return folder


def run_in(folder, function, *args):
    """``function(*args)`` run from ``folder`` (BasicSR writes experiments/ and results/ under the current one)."""
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        return function(*args)
    finally:
        os.chdir(cwd)


def smooth_image(rng, height, width):
    """A random smooth colour image (uint8 RGB): a few blurred blobs, like a tiny photo."""
    image = rng.random((height // 8 + 1, width // 8 + 1, 3)).astype(np.float32)
    image = cv2.resize(image, (width, height), interpolation=cv2.INTER_CUBIC)
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


def write_paired_split(root, split, count, size, scale=4, seed=0):
    """``root/split/gt`` and ``root/split/lq_x{scale}`` PNGs, laid out like datasets/demo."""
    rng = np.random.default_rng(seed)
    for kind in ('gt', f'lq_x{scale}'):
        os.makedirs(osp.join(root, split, kind), exist_ok=True)
    for index in range(count):
        gt = smooth_image(rng, size, size)
        lq = cv2.resize(gt, (size // scale, size // scale), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(osp.join(root, split, 'gt', f'img{index}.png'), gt)
        cv2.imwrite(osp.join(root, split, f'lq_x{scale}', f'img{index}.png'), lq)


@pytest.fixture
def tiny_demo_data(tmp_path):
    """A tiny dataset in the demo layout: 3 train pairs (64 px GT) and 1 val pair (256 px GT, enough for NIQE)."""
    root = tmp_path / 'datasets' / 'demo'
    write_paired_split(root, 'train', count=3, size=64, seed=0)
    write_paired_split(root, 'val', count=1, size=256, seed=1)
    return root


def tiny_demo_run(root, val_count=1, val_size=256):
    """Tiny demo-layout data and a tiny random prior under ``root``, and the demo's L1 + DiffLoss option dict shrunk
    to them (EDSR 8 features x 1 block, 32 px patches in batches of 2, DiffLoss crops of 16 px)."""
    write_paired_split(root / 'datasets' / 'demo', 'train', count=3, size=64, seed=0)
    write_paired_split(root / 'datasets' / 'demo', 'val', count=val_count, size=val_size, seed=1)
    torch.manual_seed(0)
    DiffusionPrior(unet=dict(TINY_UNET)).unet.save_pretrained(root / 'prior')
    opt = load_options('options/train/demo/train_EDSR_x4_demo_diffloss.yml')
    opt['network_g'].update(num_feat=8, num_block=1)
    opt['datasets']['train'].update(gt_size=32, batch_size_per_gpu=2)
    opt['train']['diffusion_opt'].update(prior=dict(type='DiffusionPrior', pretrained=str(root / 'prior')),
                                         crop_size=16)
    return opt


def load_options(relative_path):
    with open(osp.join(REPO, relative_path)) as f:
        return yaml.safe_load(f)


def write_options(opt, path):
    with open(path, 'w') as f:
        yaml.safe_dump(opt, f, sort_keys=False)
    return str(path)


def run_module(module, *args, cwd):
    """Run ``python -m module args`` in ``cwd``; fail the test with its output if it fails."""
    result = subprocess.run([sys.executable, '-m', module, *args], cwd=cwd, capture_output=True, text=True,
                            timeout=600)
    if result.returncode != 0:
        pytest.fail(f'{module} {" ".join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}')
    return result.stdout + result.stderr


def run_modules_side_by_side(*commands, cwd):
    """``run_module`` for independent commands (each ``[module, *args]``), started together: an interpreter spends
    seconds importing on one core, so on 2 cores two runs side by side take about the time of one. Returns their
    outputs in order."""
    processes = [subprocess.Popen([sys.executable, '-m', *command], cwd=cwd, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for command in commands]
    outputs = [process.communicate(timeout=600) for process in processes]
    for command, process, (stdout, stderr) in zip(commands, processes, outputs):
        if process.returncode != 0:
            pytest.fail(f'{" ".join(command)} failed:\n{stdout[-4000:]}\n{stderr[-4000:]}')
    return [stdout + stderr for stdout, stderr in outputs]
