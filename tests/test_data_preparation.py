"""scripts/data_preparation on tiny generated images: sub-images, LMDBs, meta-info, and the layout conversions."""
import json
import os
import subprocess
import sys
from os import path as osp

import cv2
import numpy as np
import pytest
from basicsr.data import build_dataset
from basicsr.utils import imfrombytes
from basicsr.utils.matlab_functions import imresize
from scipy.io import savemat

from conftest import REPO, smooth_image

SCRIPTS = osp.join(REPO, 'scripts', 'data_preparation')
sys.path.insert(0, SCRIPTS)
from create_lmdb import create_lmdb  # noqa: E402
from extract_subimages import crop_starts, extract_subimages  # noqa: E402
from make_bicubic_lr import make_bicubic_lr  # noqa: E402
from make_meta_info import make_meta_info  # noqa: E402
from pair_folders import pair_folders  # noqa: E402
from prepare_gopro import prepare_gopro  # noqa: E402
from prepare_sidd import prepare_sidd_train, prepare_sidd_val  # noqa: E402


def write(path, image):
    os.makedirs(osp.dirname(path), exist_ok=True)
    cv2.imwrite(str(path), image)


@pytest.fixture
def div2k(tmp_path):
    """Two DIV2K-style HR images (64x80) and their x4 LR images named ``<id>x4.png``."""
    rng = np.random.default_rng(0)
    for index in (1, 2):
        hr = smooth_image(rng, 64, 80)
        write(tmp_path / 'HR' / f'{index:04d}.png', hr)
        lr = imresize(hr.astype(np.float32) / 255, 1 / 4)
        write(tmp_path / 'LR' / f'{index:04d}x4.png', (np.clip(lr, 0, 1) * 255).round().astype(np.uint8))
    return tmp_path


def test_crop_starts_cover_the_border_beyond_the_threshold():
    assert crop_starts(64, 32, 16, 0) == [0, 16, 32]
    assert crop_starts(70, 32, 16, 0) == [0, 16, 32, 38]
    assert crop_starts(70, 32, 16, 10) == [0, 16, 32]
    assert crop_starts(20, 32, 16, 0) == []


def test_subimages_lmdb_and_meta_info_feed_paired_image_dataset(div2k):
    assert extract_subimages(str(div2k / 'HR'), str(div2k / 'HR_sub'), 32, 16) == 2 * 3 * 4
    assert extract_subimages(str(div2k / 'LR'), str(div2k / 'LR_sub'), 8, 4) == 2 * 3 * 4
    assert sorted(os.listdir(div2k / 'HR_sub')) == sorted(os.listdir(div2k / 'LR_sub'))
    assert '0002_s012.png' in os.listdir(div2k / 'HR_sub')
    for folder in ('HR_sub', 'LR_sub'):
        keys = create_lmdb(str(div2k / folder), str(div2k / f'{folder}.lmdb'))
        assert len(keys) == 24
        lines = open(div2k / f'{folder}.lmdb' / 'meta_info.txt').read().splitlines()
        side = 32 if folder == 'HR_sub' else 8
        assert lines[0] == f'0001_s001.png ({side},{side},3) 1'
    lines = make_meta_info(str(div2k / 'HR_sub'), str(div2k / 'meta_info' / 'meta_info_GT.txt'))
    assert lines[0] == '0001_s001.png (32,32,3)' and len(lines) == 24

    common = dict(name='div2k', type='PairedImageDataset', scale=4, gt_size=16, use_hflip=True, use_rot=True)
    from_lmdb = build_dataset(dict(common, phase='train', dataroot_gt=str(div2k / 'HR_sub.lmdb'),
                                   dataroot_lq=str(div2k / 'LR_sub.lmdb'), io_backend=dict(type='lmdb')))
    assert len(from_lmdb) == 24
    item = from_lmdb[5]
    assert item['gt'].shape == (3, 16, 16) and item['lq'].shape == (3, 4, 4)

    for key, folder in (('gt', 'HR_sub'), ('lq', 'LR_sub')):  # the LMDB holds the sub-images losslessly
        stored = imfrombytes(from_lmdb.file_client.get('0001_s001', key))
        np.testing.assert_array_equal(stored, cv2.imread(str(div2k / folder / '0001_s001.png')))

    from_meta_info = build_dataset(dict(common, phase='val', dataroot_gt=str(div2k / 'HR_sub'),
                                        dataroot_lq=str(div2k / 'LR_sub'), io_backend=dict(type='disk'),
                                        meta_info_file=str(div2k / 'meta_info' / 'meta_info_GT.txt')))
    assert len(from_meta_info) == 24
    assert from_meta_info[0]['gt'].shape == (3, 32, 32) and from_meta_info[0]['lq'].shape == (3, 8, 8)


def test_lmdb_refuses_a_wrong_or_existing_output(div2k):
    with pytest.raises(ValueError, match='must end with .lmdb'):
        create_lmdb(str(div2k / 'HR'), str(div2k / 'HR_db'))
    create_lmdb(str(div2k / 'HR'), str(div2k / 'HR.lmdb'))
    with pytest.raises(FileExistsError, match='already exists'):
        create_lmdb(str(div2k / 'HR'), str(div2k / 'HR.lmdb'))


# Runs each command line in turn as ``python <script> <args>`` would (``__main__``, the script's folder first on
# sys.path), in one interpreter: the scripts import the package, which costs seconds per interpreter.
RUN_COMMAND_LINES = """
import json, runpy, sys
from os import path as osp
for command in json.loads(sys.argv[1]):
    sys.argv = command
    sys.path.insert(0, osp.dirname(command[0]))
    runpy.run_path(command[0], run_name='__main__')
    sys.path.pop(0)
"""


def test_scripts_run_from_the_command_line(div2k):
    commands = [[osp.join(SCRIPTS, script), *args] for script, args in (
        ('extract_subimages.py', ['--input', 'HR', '--output', 'HR_sub', '--crop-size', '32', '--step', '32',
                                  '--n-thread', '2']),
        ('create_lmdb.py', ['--input', 'HR_sub', '--output', 'HR_sub.lmdb']),
        ('make_meta_info.py', ['--input', 'HR_sub', '--output', 'meta.txt']))]
    result = subprocess.run([sys.executable, '-c', RUN_COMMAND_LINES, json.dumps(commands)], cwd=div2k,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(os.listdir(div2k / 'HR_sub')) == 2 * 2 * 3
    assert len(open(div2k / 'meta.txt').read().splitlines()) == 12


def test_bicubic_lr_matches_basicsr_imresize(tmp_path):
    write(tmp_path / 'HR' / 'baby.png', smooth_image(np.random.default_rng(1), 50, 38))
    assert make_bicubic_lr(str(tmp_path / 'HR'), str(tmp_path / 'Set5'), scale=4) == ['baby']
    gt = cv2.imread(str(tmp_path / 'Set5' / 'GTmod12' / 'baby.png'))
    lr = cv2.imread(str(tmp_path / 'Set5' / 'LRbicx4' / 'baby.png'))
    assert gt.shape == (48, 36, 3) and lr.shape == (12, 9, 3)
    expected = (np.clip(imresize(gt.astype(np.float32) / 255, 1 / 4), 0, 1) * 255).round()
    assert np.abs(lr.astype(np.float32) - expected).max() <= 1


def test_gopro_is_flattened_into_paired_names(tmp_path):
    rng = np.random.default_rng(2)
    for split in ('train', 'test'):
        for kind in ('blur', 'sharp', 'blur_gamma'):
            write(tmp_path / 'GOPRO_Large' / split / 'GOPR0372_07_00' / kind / '000047.png', smooth_image(rng, 8, 8))
    counts = prepare_gopro(str(tmp_path / 'GOPRO_Large'), str(tmp_path / 'GoPro'))
    assert counts == {'train': 1, 'test': 1}
    for kind in ('blur', 'sharp'):
        path = tmp_path / 'GoPro' / 'train' / kind / 'GOPR0372_07_00_000047.png'
        assert osp.islink(path) and cv2.imread(str(path)).shape == (8, 8, 3)
    with pytest.raises(FileNotFoundError, match='GOPRO_Large folder'):
        prepare_gopro(str(tmp_path / 'GOPRO_Large' / 'train'), str(tmp_path / 'elsewhere'))


def test_sidd_scenes_are_cropped_and_validation_blocks_written(tmp_path):
    rng = np.random.default_rng(3)
    for scene in ('0001_001_S6_00100_00060_3200_L', '0002_001_S6_00100_00020_3200_N'):
        for frame in ('010', '011'):
            for kind in ('GT', 'NOISY'):
                write(tmp_path / 'Data' / scene / f'{kind}_SRGB_{frame}.PNG', smooth_image(rng, 40, 40))
    assert prepare_sidd_train(str(tmp_path / 'Data'), str(tmp_path / 'SIDD'), crop_size=32, step=16) == 4 * 4
    gt_names = sorted(os.listdir(tmp_path / 'SIDD' / 'train' / 'gt_crops'))
    assert gt_names == sorted(os.listdir(tmp_path / 'SIDD' / 'train' / 'input_crops'))
    assert gt_names[0] == '0001_010_s001.png' and len(gt_names) == 16

    blocks = rng.integers(0, 256, (2, 3, 16, 16, 3), dtype=np.uint8)
    savemat(tmp_path / 'gt.mat', {'ValidationGtBlocksSrgb': blocks})
    savemat(tmp_path / 'noisy.mat', {'ValidationNoisyBlocksSrgb': blocks[..., ::-1].copy()})
    assert prepare_sidd_val(str(tmp_path / 'gt.mat'), str(tmp_path / 'noisy.mat'), str(tmp_path / 'SIDD')) == 6
    written = cv2.imread(str(tmp_path / 'SIDD' / 'val' / 'gt' / '0001_02.png'))
    np.testing.assert_array_equal(written[..., ::-1], blocks[1, 2])  # RGB in the .mat, BGR on disk


def test_pairs_get_one_name_and_unmatched_inputs_are_named(tmp_path):
    rng = np.random.default_rng(4)
    write(tmp_path / 'clear' / '0001.png', smooth_image(rng, 8, 8))
    write(tmp_path / 'hazy' / '0001_0.8_0.2.jpg', smooth_image(rng, 8, 8))
    write(tmp_path / 'hazy' / '0001_0.9_0.1.png', smooth_image(rng, 8, 8))
    names = pair_folders(str(tmp_path / 'hazy'), str(tmp_path / 'clear'), str(tmp_path / 'out' / 'hazy'),
                         str(tmp_path / 'out' / 'clear'), input_key='^([^_]+)_')
    assert names == ['0001_0.8_0.2.png', '0001_0.9_0.1.png']
    assert sorted(os.listdir(tmp_path / 'out' / 'clear')) == names
    assert not osp.islink(tmp_path / 'out' / 'hazy' / names[0])  # a JPEG is re-encoded as PNG
    write(tmp_path / 'hazy' / '0002_0.8_0.2.png', smooth_image(rng, 8, 8))
    with pytest.raises(FileNotFoundError, match="no target for 0002_0.8_0.2.png \\(key '0002'\\)"):
        pair_folders(str(tmp_path / 'hazy'), str(tmp_path / 'clear'), str(tmp_path / 'o2' / 'hazy'),
                     str(tmp_path / 'o2' / 'clear'), input_key='^([^_]+)_')
