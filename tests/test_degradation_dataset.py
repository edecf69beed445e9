"""DegradedImageDataset and its degradations: seeding, each degradation's effect, shapes and option errors."""
import cv2
import numpy as np
import pytest
import torch
from basicsr.data import build_dataset
from basicsr.utils.matlab_functions import imresize

from basicsr_diffloss.data.degradations import build_degradations, motion_kernel
from conftest import smooth_image


@pytest.fixture
def photo_folder(tmp_path):
    rng = np.random.default_rng(0)
    for index, (height, width) in enumerate([(48, 64), (64, 48), (56, 56)]):
        cv2.imwrite(str(tmp_path / f'photo{index}.png'), smooth_image(rng, height, width))
    return tmp_path


@pytest.fixture
def gray_folder(tmp_path):
    """One flat mid-grey image: the noise it receives is exactly what a degradation added."""
    folder = tmp_path / 'gray'
    folder.mkdir()
    cv2.imwrite(str(folder / 'flat.png'), np.full((128, 128, 3), 128, np.uint8))
    return folder


def dataset(folder, phase, degradations, **options):
    root = [str(f) for f in folder] if isinstance(folder, list) else str(folder)
    return build_dataset(dict(name='photos', type='DegradedImageDataset', dataroot_gt=root, phase=phase,
                              degradations=degradations, **options))


NOISE = [dict(type='gaussian_noise', sigma=[5, 50])]


def test_val_items_are_deterministic_with_a_seed(photo_folder):
    first = dataset(photo_folder, 'val', NOISE, seed=3)
    second = dataset(photo_folder, 'val', NOISE, seed=3)
    for index in range(len(first)):
        torch.testing.assert_close(first[index]['lq'], first[index]['lq'])
        torch.testing.assert_close(first[index]['lq'], second[index]['lq'])
    assert not torch.equal(first[0]['lq'], dataset(photo_folder, 'val', NOISE, seed=4)[0]['lq'])
    unseeded = dataset(photo_folder, 'val', NOISE)
    assert not torch.equal(unseeded[0]['lq'], unseeded[0]['lq'])


def test_train_stream_is_reproducible_with_a_seed_and_varies_between_draws(photo_folder):
    def stream(seed):
        data = dataset(photo_folder, 'train', NOISE, gt_size=32, seed=seed)
        return [data[index % len(data)]['lq'] for index in range(6)]

    first, second = stream(0), stream(0)
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b)
    assert not torch.equal(first[0], first[3])  # the same image drawn twice gets a new crop and noise


def test_train_shapes_and_paths(photo_folder):
    data = dataset(photo_folder, 'train', [dict(type='bicubic', scale=4)], gt_size=32, scale=4, seed=0)
    item = data[1]
    assert item['gt'].shape == (3, 32, 32) and item['lq'].shape == (3, 8, 8)
    assert item['lq_path'] == item['gt_path'] == data.paths[1]
    assert 0 <= item['gt'].min() and item['gt'].max() <= 1


def test_val_uses_the_whole_image_cropped_to_the_scale_or_the_centre_crop(photo_folder):
    bicubic = [dict(type='bicubic', scale=3)]
    whole = dataset(photo_folder, 'val', bicubic, scale=3)[0]
    assert whole['gt'].shape == (3, 48, 63) and whole['lq'].shape == (3, 16, 21)
    centre = dataset(photo_folder, 'val', bicubic, scale=3, gt_size=24)[0]
    assert centre['gt'].shape == (3, 24, 24)
    torch.testing.assert_close(centre['gt'], whole['gt'][:, 12:36, 20:44])


def test_bicubic_is_basicsr_matlab_imresize(photo_folder):
    item = dataset(photo_folder, 'val', [dict(type='bicubic', scale=4)], scale=4)[0]
    gt = item['gt'].numpy().transpose(1, 2, 0)
    np.testing.assert_allclose(item['lq'].numpy().transpose(1, 2, 0), imresize(gt, 1 / 4), atol=1e-5)


@pytest.mark.parametrize('sigma', [15, 25, 50])
def test_gaussian_noise_has_the_requested_std(gray_folder, sigma):
    item = dataset(gray_folder, 'val', [dict(type='gaussian_noise', sigma=sigma, clip=False)], seed=0)[0]
    noise = (item['lq'] - item['gt']) * 255
    assert abs(noise.std().item() - sigma) < 0.03 * sigma
    assert abs(noise.mean().item()) < 0.03 * sigma
    assert not torch.equal(noise[0], noise[1])  # colour noise: independent channels


def test_gray_noise_is_the_same_in_every_channel(gray_folder):
    item = dataset(gray_folder, 'val', [dict(type='gaussian_noise', sigma=25, gray=True)], seed=0)[0]
    noise = item['lq'] - item['gt']
    torch.testing.assert_close(noise[0], noise[1])
    torch.testing.assert_close(noise[1], noise[2])


def test_clipped_noise_stays_in_range(photo_folder):
    item = dataset(photo_folder, 'val', [dict(type='gaussian_noise', sigma=50)], seed=0)[0]
    assert 0 <= item['lq'].min() and item['lq'].max() <= 1


def high_frequency_energy(image):
    return float((image[:, 1:, :] - image[:, :-1, :]).abs().mean() + (image[:, :, 1:] - image[:, :, :-1]).abs().mean())


@pytest.mark.parametrize('blur', [dict(type='gaussian_blur', kernel_size=11, sigma=2.0),
                                  dict(type='motion_blur', length=9, angle=[0, 180])])
def test_blurs_remove_detail_and_keep_the_mean(photo_folder, blur):
    item = dataset(photo_folder, 'val', [dict(type='gaussian_noise', sigma=20), blur], seed=0)[0]
    noisy = dataset(photo_folder, 'val', [dict(type='gaussian_noise', sigma=20)], seed=0)[0]['lq']
    assert high_frequency_energy(item['lq']) < 0.5 * high_frequency_energy(noisy)
    assert abs(item['lq'].mean() - noisy.mean()) < 0.01


def test_motion_kernel_is_a_normalised_line():
    horizontal = motion_kernel(7, 0)
    assert horizontal.shape == (7, 7) and abs(horizontal.sum() - 1) < 1e-6
    assert np.count_nonzero(horizontal[3]) == 7 and np.count_nonzero(np.delete(horizontal, 3, axis=0)) == 0
    vertical = motion_kernel(7, 90)
    np.testing.assert_allclose(vertical, horizontal.T, atol=1e-6)


def test_jpeg_changes_the_image_a_little_and_accepts_a_float_quality(photo_folder):
    item = dataset(photo_folder, 'val', [dict(type='jpeg', quality=20.0)], seed=0)[0]
    error = (item['lq'] - item['gt']).abs().mean().item()
    assert 0 < error < 0.05
    stronger = dataset(photo_folder, 'val', [dict(type='jpeg', quality=5)], seed=0)[0]
    assert (stronger['lq'] - stronger['gt']).abs().mean().item() > error


def test_low_light_darkens_and_adds_noise(photo_folder):
    clean = dataset(photo_folder, 'val', [dict(type='low_light', gamma=2.5, gain=0.3)], seed=0)[0]
    assert clean['lq'].mean() < 0.4 * clean['gt'].mean()
    expected = 0.3 * clean['gt']**2.5
    torch.testing.assert_close(clean['lq'], expected, atol=1e-5, rtol=1e-4)
    noisy = dataset(photo_folder, 'val', [dict(type='low_light', gamma=2.5, gain=0.3, shot_noise=2, read_noise=2)],
                    seed=0)[0]
    assert (noisy['lq'] - expected).abs().mean() > 1 / 255


def test_degradations_apply_in_order(photo_folder):
    chain = [dict(type='bicubic', scale=2), dict(type='gaussian_noise', sigma=10), dict(type='jpeg', quality=60)]
    item = dataset(photo_folder, 'val', chain, scale=2, seed=1)[0]
    assert item['lq'].shape == (3, 24, 32)


@pytest.mark.parametrize('degradations, message', [
    ([], "'degradations' must be a non-empty list"),
    ([dict(type='blur')], r"degradations\[0\] option 'type': 'blur' is not one of"),
    ([dict(type='jpeg', qualty=30)], r"unknown option\(s\) \['qualty'\]"),
    ([dict(type='bicubic')], r"missing option\(s\) \['scale'\]"),
    ([dict(type='gaussian_noise', sigma=[50, 10])], r"\(gaussian_noise\) option 'sigma': \[50, 10\] must be a number "
     r"or \[low, high\] with low <= high"),
    ([dict(type='gaussian_blur', kernel_size=4)], "option 'kernel_size': 4 must be an odd integer"),
    ([dict(type='jpeg', quality=[10, 101])], "option 'quality': 101 must be <= 100"),
])
def test_option_errors_name_the_option(photo_folder, degradations, message):
    with pytest.raises(ValueError, match=message):
        build_degradations(degradations)


def test_dataset_errors_name_the_option(tmp_path, photo_folder):
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="'dataroot_gt'"):
        dataset(empty, 'val', NOISE)
    with pytest.raises(FileNotFoundError, match="'extra_dataroot_gt'.*is not a folder"):
        dataset(photo_folder, 'val', NOISE, extra_dataroot_gt=[str(tmp_path / 'nowhere')])
    with pytest.raises(ValueError, match="'scale' is 2"):
        dataset(photo_folder, 'val', [dict(type='bicubic', scale=4)], scale=2)
    with pytest.raises(ValueError, match="'gt_size' is required"):
        dataset(photo_folder, 'train', NOISE)
    with pytest.raises(ValueError, match="'gt_size': 30 is not a multiple"):
        dataset(photo_folder, 'train', [dict(type='bicubic', scale=4)], scale=4, gt_size=30)
    with pytest.raises(ValueError, match="'io_backend'.*use {type: disk}"):
        dataset(photo_folder, 'val', NOISE, io_backend=dict(type='lmdb'))
    with pytest.raises(ValueError, match="'gt_size': 96 is larger"):
        dataset(photo_folder, 'train', NOISE, gt_size=96)[0]


def test_sub_folders_are_read_only_when_recursive(photo_folder):
    (photo_folder / 'noisy').mkdir()
    cv2.imwrite(str(photo_folder / 'noisy' / 'copy.png'), np.zeros((48, 48, 3), np.uint8))
    assert len(dataset(photo_folder, 'val', NOISE)) == 3
    assert len(dataset(photo_folder, 'val', NOISE, recursive=True)) == 4


def test_extra_folders_join_the_set_and_a_list_is_refused(tmp_path, photo_folder, gray_folder):
    data = dataset(photo_folder, 'val', NOISE, extra_dataroot_gt=[str(gray_folder)])
    assert len(data) == 4
    with pytest.raises(ValueError, match="'dataroot_gt' must be one folder.*'extra_dataroot_gt'"):
        dataset([str(photo_folder), str(gray_folder)], 'val', NOISE)


def test_low_light_channel_gain_casts_each_channel_and_defaults_to_none():
    from basicsr_diffloss.data.degradations import build_degradations
    image = np.full((8, 8, 3), 0.5, np.float32)
    cast, = build_degradations([dict(type='low_light', gamma=1, gain=0.5, channel_gain=[0.5, 1.5])])
    plain, = build_degradations([dict(type='low_light', gamma=1, gain=0.5)])
    means = cast(image, np.random.default_rng(0)).mean(axis=(0, 1))
    assert means.max() / means.min() > 1.05 and np.all(means <= 0.375 + 1e-6)
    assert np.allclose(plain(image, np.random.default_rng(0)), 0.25)  # no gain drawn: the same stream as before
