"""Tiny stand-ins for every dataset the option files name, laid out as datasets/README.md describes.

``build_datasets(root)`` writes raw data in each dataset's *published* layout under ``root/raw`` and prepares it with
the commands of datasets/README.md (scripts/data_preparation), so the option files are run against exactly what
those commands produce. Sizes are tiny: training images 64 px (enough for 32 px crops), test images about 48 px.
"""
import os
import sys
from os import path as osp

import cv2
import numpy as np
from basicsr.utils.matlab_functions import imresize
from conftest import REPO, smooth_image, write_paired_split
from scipy.io import savemat

sys.path.insert(0, osp.join(REPO, 'scripts', 'data_preparation'))
from create_lmdb import create_lmdb  # noqa: E402
from extract_subimages import extract_subimages  # noqa: E402
from make_bicubic_lr import make_bicubic_lr  # noqa: E402
from make_meta_info import make_meta_info  # noqa: E402
from pair_folders import pair_folders  # noqa: E402
from prepare_gopro import prepare_gopro  # noqa: E402
from prepare_sidd import prepare_sidd_train, prepare_sidd_val  # noqa: E402


class Writer:
    """Writes random smooth images; each call continues one seeded random stream."""

    def __init__(self, seed=0):
        self.rng = np.random.default_rng(seed)

    def image(self, path, height, width=None):
        image = smooth_image(self.rng, height, width or height)
        os.makedirs(osp.dirname(path), exist_ok=True)
        cv2.imwrite(str(path), image)
        return image

    def pair(self, gt_path, lq_path, height, width=None, scale=1):
        """A clean image and a degraded copy of it."""
        self.image(gt_path, height, width)
        self.degrade(gt_path, lq_path, scale)

    def degrade(self, gt_path, lq_path, scale=1):
        """A degraded copy of an image: x``scale`` bicubic down-scaling, plus a little noise."""
        gt = cv2.imread(str(gt_path)).astype(np.float32) / 255
        lq = imresize(gt, 1 / scale) if scale > 1 else gt
        lq = np.clip(lq + self.rng.normal(0, 0.02, lq.shape), 0, 1)
        os.makedirs(osp.dirname(lq_path), exist_ok=True)
        cv2.imwrite(str(lq_path), (lq * 255).round().astype(np.uint8))


def build_div2k(root, raw, writer):
    """DIV2K as published, its x4 sub-images (folders, LMDBs) and the meta-info file, as BasicSR prepares them."""
    div2k = osp.join(root, 'datasets', 'DIV2K')
    for index in (1, 2):
        writer.pair(osp.join(div2k, 'DIV2K_train_HR', f'{index:04d}.png'),
                    osp.join(div2k, 'DIV2K_train_LR_bicubic', 'X4', f'{index:04d}x4.png'), 64, scale=4)
    writer.pair(osp.join(div2k, 'DIV2K_valid_HR', '0801.png'),
                osp.join(div2k, 'DIV2K_valid_LR_bicubic', 'X4', '0801x4.png'), 48, 40, scale=4)
    extract_subimages(osp.join(div2k, 'DIV2K_train_HR'), osp.join(div2k, 'DIV2K_train_HR_sub'), 48, 16)
    extract_subimages(osp.join(div2k, 'DIV2K_train_LR_bicubic', 'X4'), osp.join(div2k, 'DIV2K_train_LR_bicubic_X4_sub'),
                      12, 4)
    for folder in ('DIV2K_train_HR_sub', 'DIV2K_train_LR_bicubic_X4_sub'):
        create_lmdb(osp.join(div2k, folder), osp.join(div2k, f'{folder}.lmdb'))
    make_meta_info(osp.join(div2k, 'DIV2K_train_HR_sub'),
                   osp.join(root, 'datasets', 'meta_info', 'meta_info_DIV2K800sub_GT.txt'))


def build_df2k_ost(root, raw, writer):
    """Real-ESRGAN's DF2K+OST: HR photos cut into sub-images under datasets/DF2K, and one meta-info file naming them
    relative to datasets/DF2K (datasets/README.md: make_meta_info.py per folder, each line prefixed with the folder)."""
    df2k = osp.join(root, 'datasets', 'DF2K')
    lines = []
    for folder, count in (('DF2K_HR', 2), ('OST', 1)):
        for index in range(count):
            writer.image(osp.join(raw, folder, f'{index:06d}.png'), 96)
        extract_subimages(osp.join(raw, folder), osp.join(df2k, f'{folder}_sub'), 64, 32)
        lines += [f'{folder}_sub/{line}' for line in make_meta_info(osp.join(df2k, f'{folder}_sub'),
                                                                    osp.join(raw, f'meta_info_{folder}_sub.txt'))]
    os.makedirs(osp.join(df2k, 'meta_info'), exist_ok=True)
    with open(osp.join(df2k, 'meta_info', 'meta_info_DF2Kmultiscale+OST_sub.txt'), 'w') as f:
        f.write('\n'.join(lines) + '\n')


def build_sr_benchmarks(root, raw, writer):
    """Set5, Set14, BSD100, Urban100 in BasicSR's packaged layout (GTmod12, LRbicx4), made from HR images."""
    for name in ('Set5', 'Set14', 'BSD100', 'Urban100'):
        for index in range(2):
            writer.image(osp.join(raw, name, f'img_{index:03d}.png'), 50, 38)
        make_bicubic_lr(osp.join(raw, name), osp.join(root, 'datasets', name), scale=4)


def build_clean_sets(root, raw, writer):
    """DFWB's clean training folders and the colour-denoising test sets, in their published file formats."""
    datasets = osp.join(root, 'datasets')
    for index in (1, 2):
        writer.image(osp.join(raw, 'Flickr2K_HR', f'{index:06d}.png'), 64)
    extract_subimages(osp.join(raw, 'Flickr2K_HR'), osp.join(datasets, 'Flickr2K', 'Flickr2K_HR_sub'), 48, 16)
    for folder, names in (('WED/pristine_images', ('00001.bmp', '00002.bmp')), ('BSD400', ('2092.jpg', '8049.jpg')),
                          ('CBSD68', ('0000.png', '0001.png')), ('Kodak24', ('kodim01.png', 'kodim02.png')),
                          ('McMaster', ('1.tif', '2.tif'))):
        for name in names:
            writer.image(osp.join(datasets, folder, name), 48, 40)


def build_sidd(root, raw, writer):
    """SIDD-Medium sRGB scene folders and the validation .mat blocks, prepared into crops (LMDB) and PNG blocks."""
    for scene in ('0001_001_S6_00100_00060_3200_L', '0002_001_S6_00100_00020_3200_N'):
        for frame in ('010', '011'):
            writer.pair(osp.join(raw, 'SIDD_Medium_Srgb', 'Data', scene, f'GT_SRGB_{frame}.PNG'),
                        osp.join(raw, 'SIDD_Medium_Srgb', 'Data', scene, f'NOISY_SRGB_{frame}.PNG'), 64)
    sidd = osp.join(root, 'datasets', 'SIDD')
    prepare_sidd_train(osp.join(raw, 'SIDD_Medium_Srgb', 'Data'), sidd, crop_size=48, step=16)
    for folder in ('gt_crops', 'input_crops'):
        create_lmdb(osp.join(sidd, 'train', folder), osp.join(sidd, 'train', f'{folder}.lmdb'))
    gt = writer.rng.integers(0, 256, (2, 2, 32, 32, 3), dtype=np.uint8)
    noisy = np.clip(gt.astype(int) + writer.rng.integers(-8, 9, gt.shape), 0, 255).astype(np.uint8)
    savemat(osp.join(raw, 'ValidationGtBlocksSrgb.mat'), {'ValidationGtBlocksSrgb': gt})
    savemat(osp.join(raw, 'ValidationNoisyBlocksSrgb.mat'), {'ValidationNoisyBlocksSrgb': noisy})
    prepare_sidd_val(osp.join(raw, 'ValidationGtBlocksSrgb.mat'), osp.join(raw, 'ValidationNoisyBlocksSrgb.mat'), sidd)


def build_gopro(root, raw, writer):
    """GOPRO_Large (split/sequence/{blur,sharp}/frame.png), flattened and cut into training crops."""
    for split, size in (('train', 64), ('test', 48)):
        for sequence in ('GOPR0372_07_00', 'GOPR0374_11_00'):
            frames = osp.join(raw, 'GOPRO_Large', split, sequence)
            writer.pair(osp.join(frames, 'sharp', '000047.png'), osp.join(frames, 'blur', '000047.png'), size)
    gopro = osp.join(root, 'datasets', 'GoPro')
    prepare_gopro(osp.join(raw, 'GOPRO_Large'), gopro)
    for kind in ('blur', 'sharp'):
        extract_subimages(osp.join(gopro, 'train', kind), osp.join(gopro, 'train', f'{kind}_crops'), 48, 16)


def build_reside(root, raw, writer):
    """RESIDE ITS and SOTS-indoor (hazy/<id>_<n>_<beta>.png, clear/<id>.png), paired by name."""
    for subset, ids, size in (('ITS', (1, 2), 64), ('SOTS/indoor', (1400, 1401), 48)):
        for clear_id in ids:
            clear = osp.join(raw, subset, 'clear' if subset == 'ITS' else 'gt', f'{clear_id}.png')
            writer.image(clear, size)
            for hazy in (f'{clear_id}_1_0.9.png', f'{clear_id}_2_0.8.png'):
                writer.degrade(clear, osp.join(raw, subset, 'hazy', hazy))
    reside = osp.join(root, 'datasets', 'RESIDE')
    pair_folders(osp.join(raw, 'ITS', 'hazy'), osp.join(raw, 'ITS', 'clear'), osp.join(reside, 'ITS_pairs', 'hazy'),
                 osp.join(reside, 'ITS_pairs', 'clear'), input_key='^([^_]+)_')
    pair_folders(osp.join(raw, 'SOTS/indoor', 'hazy'), osp.join(raw, 'SOTS/indoor', 'gt'),
                 osp.join(reside, 'SOTS_indoor_pairs', 'hazy'), osp.join(reside, 'SOTS_indoor_pairs', 'clear'),
                 input_key='^([^_]+)_')


def build_paired_sets(root, raw, writer):
    """Paired sets used as published: LOL (our485, eval15) and the MPRNet deraining package."""
    datasets = osp.join(root, 'datasets')
    for split, size in (('our485', 64), ('eval15', 48)):
        for index in (1, 2):
            writer.pair(osp.join(datasets, 'LOL', split, 'high', f'{index}.png'),
                        osp.join(datasets, 'LOL', split, 'low', f'{index}.png'), size)
    for name, size in (('Rain13K', 64), ('Rain100L', 48), ('Rain100H', 48)):
        for index in (1, 2):
            writer.pair(osp.join(datasets, name, 'target', f'{index}.png'),
                        osp.join(datasets, name, 'input', f'{index}.png'), size)


def build_datasets(root):
    """Every dataset the option files use, under ``root/datasets`` (raw downloads under ``root/raw``)."""
    raw = osp.join(root, 'raw')
    writer = Writer()
    write_paired_split(osp.join(root, 'datasets', 'demo'), 'train', count=3, size=64, seed=0)
    write_paired_split(osp.join(root, 'datasets', 'demo'), 'val', count=1, size=256, seed=1)
    # scripts/prepare_prior_photos.py's layout (train/, heldout/), scripts/fetch_license_checked_photos.py's (train/,
    # val/; packed for a GPU call by scripts/device_train_prior.sh) and scripts/prepare_study_photos.py's (train/,
    # validation/); the held-out photos are validated at 256 px
    rng = np.random.default_rng(2)
    for folder, split, count, size in (('prior_photos', 'train', 3, 64), ('prior_photos', 'heldout', 1, 256),
                                       ('prior_photos_v2', 'train', 3, 64), ('prior_photos_v2', 'val', 1, 256),
                                       ('prior_photos_v2_device', 'train', 3, 64),
                                       ('prior_photos_v2_device', 'val', 1, 256),
                                       ('study_photos', 'train', 3, 64), ('study_photos', 'validation', 1, 256)):
        os.makedirs(osp.join(root, 'datasets', folder, split))
        for index in range(count):
            cv2.imwrite(osp.join(root, 'datasets', folder, split, f'photo{index}.png'), smooth_image(rng, size, size))
    for build in (build_div2k, build_sr_benchmarks, build_clean_sets, build_sidd, build_gopro, build_reside,
                  build_paired_sets, build_df2k_ost):
        build(str(root), raw, writer)
