"""ImageCropDataset: random multi-scale crops for training, centre crops for validation."""
import cv2
import numpy as np
import pytest
import torch

from basicsr.data import build_dataset
from conftest import smooth_image


@pytest.fixture
def photo_folder(tmp_path):
    rng = np.random.default_rng(0)
    for index, (height, width) in enumerate([(40, 60), (64, 48)]):
        cv2.imwrite(str(tmp_path / f'photo{index}.png'), smooth_image(rng, height, width))
    return tmp_path


def dataset(folder, phase, **options):
    return build_dataset(dict(name='photos', type='ImageCropDataset', dataroot_gt=str(folder), gt_size=32,
                              phase=phase, **options))


@pytest.mark.parametrize('scale_range', [[1, 1], [0.5, 1.0], [1.5, 2.0]])
def test_train_crops_have_the_crop_size_and_range(photo_folder, scale_range):
    data = dataset(photo_folder, 'train', scale_range=scale_range, cache_images=True)
    assert len(data) == 2
    for index in range(len(data)):
        crop = data[index]['gt']
        assert crop.shape == (3, 32, 32) and crop.dtype == torch.float32
        assert 0 <= crop.min() and crop.max() <= 1


def test_val_crop_is_the_deterministic_centre(photo_folder):
    data = dataset(photo_folder, 'val')
    assert torch.equal(data[0]['gt'], data[0]['gt'])
    image = cv2.imread(data.paths[0])[..., ::-1].astype(np.float32) / 255
    top, left = (image.shape[0] - 32) // 2, (image.shape[1] - 32) // 2
    expected = torch.from_numpy(image[top:top + 32, left:left + 32].transpose(2, 0, 1).copy())
    torch.testing.assert_close(data[0]['gt'], expected)


def test_empty_folder_and_too_small_images_are_named(tmp_path, photo_folder):
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="'dataroot_gt'"):
        dataset(empty, 'train')
    with pytest.raises(ValueError, match="'gt_size': 128 is larger"):
        build_dataset(dict(name='photos', type='ImageCropDataset', dataroot_gt=str(photo_folder), gt_size=128,
                           phase='val'))[0]
