"""Real-ESRGAN's recipes with DiffLoss: the compare command on the Real-ESRGAN x4plus file (a GAN model) at tiny
size, and its paired-data variant (RealESRGANPairedDataset, ``high_order_degradation: False``) with diffusion_opt."""
import glob
import json
from os import path as osp

import pytest
import yaml

from basicsr.data import build_dataset
from basicsr.models import build_model
from basicsr_diffloss.commands import compare as compare_command
from basicsr_diffloss.report.train_log import parse_train_log
from basicsr_diffloss.report.training import identical_weights
from conftest import REPO, run_in, write_options
from dataset_layouts import Writer, build_df2k_ost, build_sr_benchmarks
from test_option_files import tiny_options

pytest.importorskip('realesrgan')  # scripts/install.sh installs it (the `realesrgan` extra)

GAN_FILE = 'options/train/RealESRGAN/train_RealESRGAN_x4plus_diffloss.yml'


@pytest.fixture(scope='module')
def compared(tmp_path_factory):
    """Real-ESRGAN x4plus +DiffLoss, shrunk, compared with the same file without diffusion_opt (2 iterations)."""
    root = tmp_path_factory.mktemp('real_esrgan_compare')
    writer = Writer()
    build_df2k_ost(str(root), str(root / 'raw'), writer)
    build_sr_benchmarks(str(root), str(root / 'raw'), writer)
    with open(osp.join(REPO, GAN_FILE)) as f:
        opt = yaml.safe_load(f)
    run_in(root, tiny_options, opt, 'train', set(), GAN_FILE)
    opt['name'] = 'RealESRGAN_x4plus_tiny_diffloss'
    (root / 'options').mkdir()
    option_file = write_options(opt, root / 'options' / 'train_RealESRGAN_x4plus_tiny_diffloss.yml')
    test_file = write_options({'datasets': {'test_1': {
        'name': 'Set5', 'type': 'PairedImageDataset', 'dataroot_gt': 'datasets/Set5/GTmod12',
        'dataroot_lq': 'datasets/Set5/LRbicx4', 'io_backend': {'type': 'disk'}}}}, root / 'options' / 'test_Set5.yml')
    run_in(root, compare_command.main, ['-opt', option_file, '--iters', '2', '--datasets_from', test_file,
                                           '--output', 'report', '--crop_size', '16'])
    return root


def test_compare_trains_both_gan_runs_and_reports(compared):
    root = compared
    baseline = yaml.safe_load(open(root / 'options' / 'train_RealESRGAN_x4plus_tiny_baseline.yml'))
    assert baseline['model_type'] == 'RealESRGANModel' and 'diffusion_opt' not in baseline['train']
    for name, built in (('RealESRGAN_x4plus_tiny_baseline', 'RealESRGANModel'),
                        ('RealESRGAN_x4plus_tiny_diffloss', 'DiffLossRealESRGANModel')):
        log_file = glob.glob(str(root / 'experiments' / name / 'train_*.log'))[0]
        assert f'Model [{built}] is created.' in open(log_file).read()
        losses, _ = parse_train_log(log_file)
        assert sorted(losses['l_g_pix']) == [1, 2] and sorted(losses['l_g_gan']) == [1, 2]
        assert ('l_diff_eps' in losses) == name.endswith('diffloss')
    metrics = json.load(open(root / 'report' / 'metrics.json'))
    assert set(metrics) == {'baseline', 'diffloss'}
    assert all(metrics[run]['Set5']['values']['psnr'] > 0 for run in metrics)
    assert not identical_weights(*(root / 'experiments' / name / 'models' / 'net_g_latest.pth' for name in (
        'RealESRGAN_x4plus_tiny_baseline', 'RealESRGAN_x4plus_tiny_diffloss')))  # the term changed the generator
    assert osp.isfile(root / 'report' / 'report.md') and osp.isfile(root / 'report' / 'grid_Set5.png')


def test_paired_data_variant_trains_with_diffloss(tmp_path):
    """RealESRGANPairedDataset (GT and LQ folders, a meta-info file of pairs) feeding RealESRGANModel in its paired
    mode, as Real-ESRGAN's finetune_realesrgan_x4plus_pairdata.yml does, with a diffusion_opt block."""
    writer = Writer()
    for index in range(2):
        writer.pair(tmp_path / 'gt' / f'{index}.png', tmp_path / 'lq' / f'{index}.png', 64, scale=4)
    with open(tmp_path / 'pairs.txt', 'w') as f:
        f.write(''.join(f'{index}.png, {index}.png\n' for index in range(2)))
    with open(osp.join(REPO, GAN_FILE)) as f:
        opt = yaml.safe_load(f)
    opt['datasets']['train'] = dict(name='pairs', type='RealESRGANPairedDataset', dataroot_gt=str(tmp_path / 'gt'),
                                    dataroot_lq=str(tmp_path / 'lq'), meta_info=str(tmp_path / 'pairs.txt'),
                                    io_backend={'type': 'disk'}, gt_size=256, use_hflip=True, use_rot=False,
                                    num_worker_per_gpu=5, batch_size_per_gpu=2)
    opt['high_order_degradation'] = False
    run_in(tmp_path, tiny_options, opt, 'train', set(), GAN_FILE)
    opt.update(is_train=True, dist=False, rank=0, world_size=1)
    opt['path'] = dict(opt['path'], models=str(tmp_path / 'models'), training_states=str(tmp_path / 'states'))
    opt['datasets']['train']['phase'] = 'train'
    opt['datasets']['train']['scale'] = opt['scale']
    dataset = build_dataset(opt['datasets']['train'])
    model = run_in(tmp_path, build_model, opt)
    item = dataset[0]
    model.feed_data({key: item[key][None].repeat(2, 1, 1, 1) for key in ('lq', 'gt')})
    model.optimize_parameters(1)
    assert type(model).__name__ == 'DiffLossRealESRGANModel'
    assert list(model.get_current_log())[:3] == ['l_g_pix', 'l_diff_eps', 'l_g_percep']
