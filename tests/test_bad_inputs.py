"""Bad input fails at start-up (or at the bad step) with a message that names the option, the value and the fix."""
import pytest
import torch

from basicsr.models import build_model
from basicsr_diffloss.priors import DiffusionPrior
from basicsr_diffloss.losses import DiffLoss
from basicsr_diffloss.losses.diffloss_loss import NonFiniteInputError
from conftest import TINY_UNET
from test_models import model_options


def corrupt_weights(folder):
    (folder / 'diffusion_pytorch_model.safetensors').write_bytes(b'not a safetensors file')
    return folder


def mismatched_config(folder):
    config = (folder / 'config.json').read_text().replace('"layers_per_block": 1', '"layers_per_block": 2')
    (folder / 'config.json').write_text(config)
    return folder


# (what is wrong, how to build it, expected exception, words the message must hold)
PRIOR_CASES = [
    ('missing pretrained path', lambda f, tmp: DiffusionPrior(pretrained=str(tmp / 'missing')), FileNotFoundError,
     r"option 'pretrained': '.*missing' is not a folder"),
    ('folder without config.json', lambda f, tmp: DiffusionPrior(pretrained=str(tmp)), FileNotFoundError,
     r"'pretrained': .* has no config.json .*save_pretrained"),
    ('unreadable weights', lambda f, tmp: DiffusionPrior(pretrained=str(corrupt_weights(f))), ValueError,
     r"option 'pretrained': cannot load the UNet in"),
    ('shapes not matching config.json', lambda f, tmp: DiffusionPrior(pretrained=str(mismatched_config(f))),
     ValueError, r"(?s)'pretrained': cannot load the UNet in .*size mismatch"),
]

LOSS_CASES = [
    ('t_range outside the schedule', {'t_range': [0, 1000]}, r"'t_range': \[0, 1000\] must satisfy .* <= 999"),
    ('negative weight', {'h_weight': -0.5}, r"'h_weight': -0.5 must be >= 0"),
    ('crop_size not a multiple of the factor', {'crop_size': 15}, r"'crop_size': 15 .*factor 2; use 14 or 16"),
    ('non-numeric option', {'eps_weight': '5e-1'}, r"'eps_weight': '5e-1' is not a number .*!!float"),
    ('speed option given to the loss', {'dtype': 'fp8'}, r"\['dtype'\] choose how the prior runs"),
    ('unknown out_of_range', {'out_of_range': 'wrap'}, r"'out_of_range': 'wrap' is not one of"),
]


@pytest.mark.parametrize('case, build, error, message', PRIOR_CASES, ids=[c[0] for c in PRIOR_CASES])
def test_bad_prior_options(tiny_prior_folder, tmp_path, case, build, error, message):
    with pytest.raises(error, match=message) as caught:
        build(tiny_prior_folder, tmp_path)
    print(f'\n{case}: {caught.value}')


@pytest.mark.parametrize('case, options, message', LOSS_CASES, ids=[c[0] for c in LOSS_CASES])
def test_bad_diffloss_options(tiny_prior, case, options, message):
    with pytest.raises(ValueError, match=message) as caught:
        DiffLoss(prior=tiny_prior, **options)
    print(f'\n{case}: {caught.value}')


def test_prior_channels_that_differ_from_the_restorer_fail_at_start_up(tmp_path):
    opt = model_options(tmp_path, 'DiffLossSRModel')
    opt['network_g'].update(num_in_ch=4, num_out_ch=4)
    with pytest.raises(ValueError, match=r'prior takes 3-channel images but network_g \(EDSR\) outputs 4'):
        build_model(opt)


def test_crop_larger_than_the_training_patch_fails_at_start_up(tmp_path):
    opt = model_options(tmp_path, 'DiffLossSRModel')
    opt['datasets'] = {'train': {'gt_size': 32}}
    opt['train']['diffusion_opt']['crop_size'] = 64
    with pytest.raises(ValueError, match=r'crop_size: 64 is larger than .*gt_size 32; use at most 32'):
        build_model(opt)


def nan_batch():
    lq = torch.rand(2, 3, 8, 8)
    lq[0, 0, 0, 0] = float('nan')
    return {'lq': lq, 'gt': torch.rand(2, 3, 16, 16)}


def test_nan_output_stops_training_with_the_iteration(tmp_path):
    model = build_model(model_options(tmp_path, 'DiffLossSRModel'))
    model.feed_data(nan_batch())
    with pytest.raises(NonFiniteInputError, match=r'Iteration 7: DiffLoss: pred hold NaN or Inf'):
        model.optimize_parameters(7)


def test_nan_output_can_skip_the_step_and_count_it(tmp_path):
    opt = model_options(tmp_path, 'DiffLossSRModel')
    opt['train']['diffusion_opt']['nonfinite'] = 'skip'
    model = build_model(opt)
    before = [p.detach().clone() for p in model.net_g.parameters()]
    for step in (1, 2):
        model.feed_data(nan_batch())
        model.optimize_parameters(step)
    assert model.get_current_log() == {'skipped_steps': 2.0}
    assert all(torch.equal(a, b) for a, b in zip(before, model.net_g.parameters()))
    model.feed_data({'lq': torch.rand(2, 3, 8, 8), 'gt': torch.rand(2, 3, 16, 16)})
    model.optimize_parameters(3)
    assert 'l_diff_eps' in model.get_current_log()


def test_images_outside_the_range_are_clamped_or_refused(tiny_prior):
    pred, target = torch.rand(1, 3, 8, 8) * 1.4 - 0.2, torch.rand(1, 3, 8, 8)
    clamped = DiffLoss(prior=tiny_prior, eps_weight=3.5, seed=0)(pred, target)
    torch.testing.assert_close(clamped, DiffLoss(prior=tiny_prior, eps_weight=3.5, seed=0)(pred.clamp(0, 1), target))
    with pytest.raises(ValueError, match=r"pred holds values in \[-0.\d+, 1.\d+\], outside option 'input_range'"):
        DiffLoss(prior=tiny_prior, eps_weight=3.5, out_of_range='error')(pred, target)


def test_prior_built_from_bad_inline_config_names_the_problem():
    with pytest.raises(ValueError, match='output channels'):
        DiffusionPrior(unet=dict(TINY_UNET, out_channels=5))
