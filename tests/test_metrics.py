"""The registered metrics on known inputs, their start-up checks, NaN-aware validation means and prior diagnostics."""
import logging
import math
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from torchvision.models.vgg import cfgs, make_layers

from basicsr.data import build_dataloader, build_dataset
from basicsr.metrics import calculate_metric, calculate_niqe
from basicsr.models import build_model
from basicsr_diffloss.losses import DiffLoss
from basicsr_diffloss.metrics import check_metric_options, to_tensor
from basicsr_diffloss.models.prior_diagnostics import PriorDiagnostics
from conftest import load_options, smooth_image

FULL_REFERENCE = {  # type: better
    'calculate_haarpsi': 'higher',
    'calculate_gmsd': 'lower',
    'calculate_ms_ssim': 'higher',
}


@pytest.fixture(scope='module')
def photo():
    """A 200x256 uint8 BGR image with texture (noise on smooth blobs), and a blurred copy of it."""
    rng = np.random.default_rng(0)
    image = smooth_image(rng, 200, 256).astype(np.float32) + rng.normal(0, 12, (200, 256, 3))
    image = np.clip(image, 0, 255).astype(np.uint8)
    return image, cv2.GaussianBlur(image, (7, 7), 2)


@pytest.fixture
def logged():
    """The messages (INFO and above) BasicSR's logger ('basicsr', which does not propagate) receives in the test."""
    messages = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = logging.getLogger('basicsr')
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield messages
    logger.removeHandler(handler)
    logger.setLevel(level)


def metric(metric_type, img, img2=None, **options):
    return calculate_metric(dict(img=img, img2=img2), dict(type=metric_type, **options))


@pytest.mark.parametrize('metric_type', sorted(FULL_REFERENCE))
@pytest.mark.parametrize('test_y_channel', [False, True])
def test_identical_images_score_best_and_blur_scores_worse(photo, metric_type, test_y_channel):
    image, blurred = photo
    same = metric(metric_type, image, image, crop_border=4, test_y_channel=test_y_channel)
    worse = metric(metric_type, blurred, image, crop_border=4, test_y_channel=test_y_channel)
    best = 1.0 if FULL_REFERENCE[metric_type] == 'higher' else 0.0
    assert same == pytest.approx(best, abs=1e-4)
    assert (worse < same - 0.01) if FULL_REFERENCE[metric_type] == 'higher' else (worse > same + 0.01)


def test_conversion_follows_basicsr_crop_and_y_channel(photo):
    image, _ = photo
    rgb = to_tensor(image, crop_border=4)
    assert rgb.shape == (1, 3, 192, 248)
    assert torch.allclose(rgb[0, 0], torch.from_numpy(image[4:-4, 4:-4, 2] / 255.).float())  # BGR -> RGB
    y = to_tensor(image, crop_border=4, test_y_channel=True)
    assert y.shape == (1, 1, 192, 248) and 16 / 255 - 1e-6 <= y.min() and y.max() <= 235 / 255 + 1e-6


@pytest.mark.filterwarnings('ignore:Degrees of freedom')  # BasicSR's NIQE on the small image, before it fails
def test_niqe_matches_basicsr_on_large_images_and_is_nan_with_a_warning_on_small_ones(photo, logged):
    image, _ = photo
    assert metric('calculate_niqe_or_nan', image, crop_border=4) == calculate_niqe(image, 4)
    small = image[:150, :150]
    with pytest.raises(np.linalg.LinAlgError):  # what BasicSR's own NIQE does
        calculate_niqe(small, 4)
    assert math.isnan(metric('calculate_niqe_or_nan', small, crop_border=4))
    assert math.isnan(metric('calculate_niqe_or_nan', small, crop_border=4))
    warnings = [message for message in logged if message.startswith('NIQE')]
    assert len(warnings) == 1  # once per size
    assert '142x142' in warnings[0] and '192 px' in warnings[0]


def test_ms_ssim_is_nan_below_its_minimum_size(photo, logged):
    image, blurred = photo
    assert math.isnan(metric('calculate_ms_ssim', blurred[:100, :100], image[:100, :100], crop_border=0))
    assert any('MS-SSIM' in message and '100x100' in message for message in logged)


def backbone_file(tmp_path, name, features):
    """A randomly initialised backbone saved as torchvision saves it (``features.<index>.*`` keys)."""
    torch.manual_seed(0)
    path = tmp_path / name
    torch.save({f'features.{key}': value for key, value in features.state_dict().items()}, path)
    return str(path)


def test_lpips_reads_local_weights(tmp_path, photo):
    from torchvision.models import alexnet
    image, blurred = photo
    weights = backbone_file(tmp_path, 'alexnet-owt-7be5be79.pth', alexnet(weights=None).features)
    assert metric('calculate_lpips', image, image, weights=weights) == pytest.approx(0, abs=1e-6)
    assert metric('calculate_lpips', blurred, image, weights=weights) > 1e-4
    torch.save({'lin0.model.1.weight': torch.zeros(1, 3, 1, 1)}, tmp_path / 'wrong_lin.pth')
    with pytest.raises(ValueError, match='not the linear layers'):
        metric('calculate_lpips', image, image, weights=weights, lin_weights=str(tmp_path / 'wrong_lin.pth'))


def test_dists_equals_the_reference_implementation(tmp_path, photo):
    import DISTS_pytorch.DISTS_pt as reference
    image, blurred = photo
    features = make_layers(cfgs['D'])
    weights = backbone_file(tmp_path, 'vgg16-397923af.pth', features)
    ours = metric('calculate_dists', blurred, image, weights=weights)
    assert metric('calculate_dists', image, image, weights=weights) == pytest.approx(0, abs=1e-6)
    original = reference.models.vgg16
    reference.models.vgg16 = lambda **kwargs: SimpleNamespace(features=features)  # the same random weights
    try:
        expected = reference.DISTS()(to_tensor(blurred), to_tensor(image)).item()
    finally:
        reference.models.vgg16 = original
    assert ours == pytest.approx(expected, rel=1e-5) and ours > 0


def tiny_test_options(tmp_path):
    """The demo test option file with a tiny EDSR and no checkpoint."""
    opt = load_options('options/test/demo/test_EDSR_x4_demo.yml')
    opt['network_g'].update(num_feat=8, num_block=1)
    opt.update(num_gpu=0, is_train=False, dist=False, rank=0, world_size=1)
    opt['path'] = dict(pretrain_network_g=None, visualization=str(tmp_path / 'visualization'))
    return opt


def test_missing_lpips_weights_fail_when_the_model_is_built(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    opt = tiny_test_options(tmp_path)
    opt['val']['metrics']['lpips'] = dict(type='calculate_lpips', better='lower')
    opt['model_type'] = 'DiffLossSRModel'  # the package's validation, which checks val.metrics at build time
    with pytest.raises(FileNotFoundError) as error:
        build_model(opt)
    message = str(error.value)
    assert message.startswith('val.metrics.lpips: ') and 'alexnet-owt-7be5be79.pth' in message
    assert 'experiments/pretrained_models/alexnet-owt-7be5be79.pth' in message


@pytest.mark.parametrize('block, error', [
    (dict(type='calculate_psnrr', crop_border=4), "'calculate_psnrr' is not a registered metric"),
    (dict(type='calculate_psnr'), r"needs the option\(s\) \['crop_border'\]"),
    (dict(type='calculate_gmsd', better='smaller'), "must be 'higher' or 'lower'"),
])
def test_bad_metric_blocks_are_named(block, error):
    with pytest.raises(ValueError, match=f'val.metrics.bad.*{error}'):
        check_metric_options({'val': {'metrics': {'bad': block}}})


def test_validation_leaves_nan_out_of_the_mean_and_says_so(tmp_path, logged):
    rng = np.random.default_rng(0)
    for folder in ('gt', 'lq'):
        (tmp_path / folder).mkdir()
    for name, size in (('big', 256), ('small', 128)):
        gt = smooth_image(rng, size, size)
        cv2.imwrite(str(tmp_path / 'gt' / f'{name}.png'), gt)
        cv2.imwrite(str(tmp_path / 'lq' / f'{name}.png'), cv2.resize(gt, (size // 4, size // 4)))
    opt = tiny_test_options(tmp_path)
    opt['val']['metrics']['niqe']['type'] = 'calculate_niqe_or_nan'
    opt['model_type'] = 'DiffLossSRModel'  # the package's validation (BasicSR's SRModel would log nan)
    dataset_opt = dict(opt['datasets']['test_1'], dataroot_gt=str(tmp_path / 'gt'), dataroot_lq=str(tmp_path / 'lq'),
                       phase='val', scale=4)
    torch.manual_seed(0)
    model = build_model(opt)
    loader = build_dataloader(build_dataset(dataset_opt), dataset_opt, num_gpu=0, dist=False)
    model.validation(loader, current_iter='test', tb_logger=None, save_img=True)
    assert model.metric_counts['niqe'] == (1, 2) and model.metric_counts['psnr'] == (2, 2)
    big = cv2.imread(str(tmp_path / 'visualization' / 'demo_val' / 'big_test_EDSR_x4_demo.png'))
    assert model.metric_results['niqe'] == pytest.approx(calculate_niqe(big, 4))
    assert any('# niqe:' in message and '(computed on 1 of 2 images)' in message for message in logged)


def test_prior_diagnostics_picture(tiny_prior):
    diffloss = DiffLoss(tiny_prior, crop_size=None)
    diagnostics = PriorDiagnostics(diffloss, timesteps=[100, 700], crop_size=24)
    torch.manual_seed(0)
    gt = torch.rand(1, 3, 30, 40)
    picture = diagnostics.picture(gt, gt)
    tile, caption, gap = 24 * 6, 22, 4  # 24 px crops enlarged 6x to reach 128 px
    assert picture.shape == (3 * (tile + caption), 3 * tile + 2 * gap, 3) and picture.dtype == np.uint8
    estimate_from_output = picture[-tile:, tile + gap:2 * tile + gap]
    estimate_from_gt = picture[-tile:, 2 * (tile + gap):]
    assert np.array_equal(estimate_from_output, estimate_from_gt)  # same image, same noise: same estimate
    assert not np.array_equal(diagnostics.picture(gt * 0.5, gt), picture)
    with pytest.raises(ValueError, match='timesteps'):
        PriorDiagnostics(diffloss, timesteps=[1000])


def test_niqe_is_nan_on_a_degenerate_image():
    """A collapsed restorer's output (a fine periodic pattern) makes BasicSR's NIQE fail to converge."""
    y, x = np.mgrid[:256, :256]
    pattern = np.repeat((((x + y) % 2 == 0) * 80 + 100).astype(np.uint8)[..., None], 3, axis=2)
    assert math.isnan(metric('calculate_niqe_or_nan', pattern, crop_border=4))
