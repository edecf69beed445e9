"""The haze and rain degradations: the scattering model, depth files, streak geometry, seeding and option errors."""
import cv2
import numpy as np
import pytest
import torch
from basicsr.data import build_dataset

from basicsr_diffloss.data.degradations import build_degradations, random_depth, streak_kernel, transmission
from conftest import smooth_image


@pytest.fixture
def photo_folder(tmp_path):
    folder = tmp_path / 'photos'
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index, (height, width) in enumerate([(48, 64), (64, 48)]):
        cv2.imwrite(str(folder / f'photo{index}.png'), smooth_image(rng, height, width))
    return folder


def dataset(folder, phase, degradations, **options):
    return build_dataset(dict(name='photos', type='DegradedImageDataset', dataroot_gt=str(folder), phase=phase,
                              degradations=degradations, **options))


def degrade(option, image, seed=0, **depth):
    return build_degradations([option])[0](image, np.random.default_rng(seed), **depth)


def photo(height=48, width=64, seed=0):
    return smooth_image(np.random.default_rng(seed), height, width).astype(np.float32) / 255


def contrast(image):
    return float(image.std())


@pytest.mark.parametrize('kind', ['haze', 'rain'])
def test_shapes_ranges_and_determinism(photo_folder, kind):
    degradations = [dict(type=kind, layers=[1, 3])] if kind == 'rain' else [dict(type=kind, tint=0.2)]
    first, second = dataset(photo_folder, 'val', degradations, seed=5), dataset(photo_folder, 'val', degradations,
                                                                                 seed=5)
    for index in range(len(first)):
        item = first[index]
        assert item['lq'].shape == item['gt'].shape and item['lq'].dtype == torch.float32
        assert 0 <= item['lq'].min() and item['lq'].max() <= 1
        assert (item['lq'] - item['gt']).abs().mean() > 0.01
        torch.testing.assert_close(item['lq'], second[index]['lq'], rtol=0, atol=0)
    assert not torch.equal(first[0]['lq'], dataset(photo_folder, 'val', degradations, seed=6)[0]['lq'])
    train = dataset(photo_folder, 'train', degradations, gt_size=32, seed=1)
    again = dataset(photo_folder, 'train', degradations, gt_size=32, seed=1)
    for index in (0, 1, 0):
        torch.testing.assert_close(train[index]['lq'], again[index]['lq'], rtol=0, atol=0)


def test_haze_follows_the_scattering_model():
    image = photo()
    beta, airlight = 1.5, 0.8
    hazy = degrade(dict(type='haze', beta=beta, airlight=airlight, near_depth=1.0), image)
    t = np.exp(-beta)  # near_depth 1: the whole image at the farthest depth
    np.testing.assert_allclose(hazy, image * t + airlight * (1 - t), atol=1e-6)


def test_more_beta_lowers_contrast_and_moves_towards_the_airlight():
    image, airlight = photo(), 0.9
    hazy = [degrade(dict(type='haze', beta=beta, airlight=airlight), image) for beta in (0.0, 0.5, 1.5, 4.0)]
    np.testing.assert_allclose(hazy[0], image, atol=1e-6)  # beta 0: clear air
    contrasts = [contrast(item) for item in hazy]
    distances = [float(np.abs(item - airlight).mean()) for item in hazy]
    assert contrasts == sorted(contrasts, reverse=True) and contrasts[-1] < 0.5 * contrasts[0]
    assert distances == sorted(distances, reverse=True) and distances[-1] < 0.5 * distances[0]


def test_random_depth_is_smooth_far_at_the_top_and_spans_its_range():
    rng = np.random.default_rng(0)
    depth = random_depth(64, 96, rng, gradient=0.8, scale=0.3, near=0.2)
    assert depth.shape == (64, 96) and depth.dtype == np.float32
    assert depth.min() == pytest.approx(0.2, abs=1e-6) and depth.max() == pytest.approx(1.0, abs=1e-6)
    assert depth[:8].mean() > depth[-8:].mean() + 0.3  # the ramp: far at the top
    assert np.abs(np.diff(depth, axis=0)).max() < 0.1 and np.abs(np.diff(depth, axis=1)).max() < 0.1
    t = transmission(depth, 3.0)
    assert 0 < t.min() and t.max() <= 1 and t.min() == pytest.approx(np.exp(-3.0), rel=1e-5)
    assert transmission(np.zeros((2, 2), np.float32), 3.0).min() == 1


def test_tinted_airlight_colours_the_haze_and_grey_does_not():
    white = np.ones((16, 16, 3), np.float32)
    black = np.zeros_like(white)
    grey = degrade(dict(type='haze', beta=50, airlight=0.8, near_depth=1.0), black)
    np.testing.assert_allclose(grey, 0.8, atol=1e-6)
    tinted = degrade(dict(type='haze', beta=50, airlight=0.8, tint=0.3, near_depth=1.0), black)
    channels = tinted.reshape(-1, 3).mean(0)
    assert np.ptp(channels) > 0.02 and np.all(np.abs(channels - 0.8) <= 0.3 * 0.8 + 1e-6)
    assert degrade(dict(type='haze', beta=50, airlight=1.0, tint=0.3), white).max() <= 1


def write_depth(folder, name, depth, suffix):
    folder.mkdir(exist_ok=True)
    if suffix == '.npy':
        np.save(folder / f'{name}.npy', depth)
    else:
        cv2.imwrite(str(folder / f'{name}{suffix}'), depth.astype(np.uint16))


@pytest.mark.parametrize('suffix', ['.npy', '_depth.png'])
def test_a_depth_file_is_used_and_cropped_and_flipped_with_the_image(tmp_path, photo_folder, suffix):
    """Each depth file is the image's own brightness, so the depth recovered from (lq, gt) must match gt pixel for
    pixel, whatever crop, flip or rotation the train phase drew."""
    depths = tmp_path / 'depth'
    for index in range(2):
        gray = cv2.imread(str(photo_folder / f'photo{index}.png'), cv2.IMREAD_GRAYSCALE).astype(np.float32)
        write_depth(depths, f'photo{index}', 5000 + 150 * gray, suffix)
    beta, airlight = 2.0, 0.9
    haze = dict(type='haze', beta=beta, airlight=airlight, depth_folder=str(depths), depth_suffix=suffix)
    item = dataset(photo_folder, 'val', [haze], seed=0)[0]
    gt, lq = item['gt'].numpy(), item['lq'].numpy()
    depth = 5000 + 150 * cv2.imread(str(photo_folder / 'photo0.png'), cv2.IMREAD_GRAYSCALE).astype(np.float32)
    t = np.exp(-beta * depth / depth.max())
    np.testing.assert_allclose(lq, gt * t + airlight * (1 - t), atol=1e-4)
    train = dataset(photo_folder, 'train', [dict(haze, airlight=0.0)], gt_size=32, seed=3)  # lq = gt t
    for index in range(4):
        item = train[index % 2]
        gt = item['gt'].numpy()
        recovered = -np.log(item['lq'].numpy().sum(0) / gt.sum(0)) / beta
        brightness = gt.transpose(1, 2, 0) @ np.float32([0.299, 0.587, 0.114])  # gt is RGB
        assert np.corrcoef(recovered.ravel(), brightness.ravel())[0, 1] > 0.99


def test_depth_file_errors_name_the_file_and_the_fix(tmp_path, photo_folder):
    depths = tmp_path / 'depth'
    write_depth(depths, 'photo0', np.ones((48, 64), np.float32), '.npy')
    haze = dict(type='haze', depth_folder=str(depths), depth_suffix='.npy')
    with pytest.raises(ValueError, match=r"option 'depth_folder': no depth map .*photo1\.npy .*\(1 of 2 images lack "
                                         r'one\); add them, or leave depth_folder unset'):
        dataset(photo_folder, 'val', [haze])  # at start-up
    write_depth(depths, 'photo1', np.ones((30, 30), np.float32), '.npy')
    with pytest.raises(ValueError, match=r'photo1\.npy is 30x30 but the image is 48x64'):
        dataset(photo_folder, 'val', [haze])[1]
    write_depth(depths, 'photo1', np.zeros((32, 24), np.float32), '.npy')  # the right aspect ratio, no depth
    with pytest.raises(ValueError, match='positive maximum'):
        dataset(photo_folder, 'val', [haze])[1]
    with pytest.raises(ValueError, match="option 'depth_folder': .*nowhere' is not a folder"):
        dataset(photo_folder, 'val', [dict(type='haze', depth_folder=str(tmp_path / 'nowhere'))])
    other = tmp_path / 'other'
    other.mkdir()
    with pytest.raises(ValueError, match='a scene has one depth map'):
        dataset(photo_folder, 'val', [haze, dict(type='rain', haze=dict(depth_folder=str(other)))])
    with pytest.raises(ValueError, match='depth_folder is set but no depth map was given'):
        degrade(haze, photo())


def test_rain_density_zero_is_the_identity_and_streaks_only_brighten():
    image = photo()
    np.testing.assert_array_equal(degrade(dict(type='rain', density=0, layers=3), image), image)
    for blend in ('add', 'screen'):
        rainy = degrade(dict(type='rain', density=0.02, blend=blend, layers=2), image)
        assert (rainy >= image - 1e-6).all() and (rainy > image + 0.05).mean() > 0.05
    veiled = degrade(dict(type='rain', density=0, haze=dict(beta=1.0, airlight=0.9, near_depth=1.0)), image)
    np.testing.assert_allclose(veiled, image * np.exp(-1.0) + 0.9 * (1 - np.exp(-1.0)), atol=1e-6)


def streak_tilt(difference):
    """The tilt from vertical (degrees, positive: top to the right) of the lines in ``difference``, from its
    structure tensor: the gradients are perpendicular to the streaks."""
    gx = cv2.Sobel(difference, cv2.CV_64F, 1, 0)
    gy = -cv2.Sobel(difference, cv2.CV_64F, 0, 1)  # y up
    gradient_angle = 0.5 * np.degrees(np.arctan2(2 * (gx * gy).sum(), (gx * gx).sum() - (gy * gy).sum()))
    streak_angle = gradient_angle + 90  # from horizontal, counter-clockwise
    return (90 - streak_angle + 90) % 180 - 90


@pytest.mark.parametrize('angle', [-40, -15, 0, 25, 60])
def test_streak_orientation_follows_the_angle(angle):
    image = np.full((96, 96, 3), 0.3, np.float32)
    rainy = degrade(dict(type='rain', density=0.01, length=25, width=1.5, angle=angle, brightness=0.5), image)
    assert streak_tilt((rainy - image).mean(2)) == pytest.approx(angle, abs=4)


def test_streak_kernel_has_the_length_width_and_peak():
    kernel = streak_kernel(21, 3.0, 0)
    assert kernel.max() == pytest.approx(1)
    rows, columns = np.nonzero(kernel > 0.5)
    assert 19 <= np.ptp(rows) + 1 <= 23 and 2 <= np.ptp(columns) + 1 <= 4  # vertical, 21 long, about 3 wide


@pytest.mark.parametrize('degradations, message', [
    ([dict(type='haze', beta=-1)], r"\(haze\) option 'beta': -1 must be >= 0"),
    ([dict(type='haze', airlight=[0.5, 1.2])], "option 'airlight': 1.2 must be <= 1"),
    ([dict(type='haze', tint='warm')], "option 'tint': 'warm' is not a number"),
    ([dict(type='haze', depth_suffix='.jpg', depth_folder='.')], r"option 'depth_suffix': '\.jpg' must end with"),
    ([dict(type='haze', depht_folder='x')], r"unknown option\(s\) \['depht_folder'\]"),
    ([dict(type='rain', density=2)], "option 'density': 2 must be <= 1"),
    ([dict(type='rain', angle=[-100, 0])], "option 'angle': -100 must be >= -90"),
    ([dict(type='rain', layers=1.5)], "option 'layers': 1.5 is not an integer"),
    ([dict(type='rain', blend='multiply')], r"option 'blend': 'multiply' is not one of \['add', 'screen'\]"),
    ([dict(type='rain', haze=0.5)], "option 'haze': 0.5 must be a dict of haze options"),
    ([dict(type='rain', haze=dict(beta=-2))], r"\(rain\) haze option 'beta': -2 must be >= 0"),
])
def test_option_errors_name_the_option(degradations, message):
    with pytest.raises(ValueError, match=message):
        build_degradations(degradations)
