"""DiffLoss option ``strength``: term weights as multiples of the pixel loss's gradient, measured on live batches."""
import copy

import pytest
import torch
import torch.nn.functional as F

from basicsr_diffloss.losses import DiffLoss
from basicsr_diffloss.models.diffloss_model import PixelAndDiffusionLoss


def batches(count, seed):
    generator = torch.Generator().manual_seed(seed)
    for _ in range(count):
        gt = torch.rand(4, 3, 16, 16, generator=generator)
        yield (gt + 0.1 * torch.randn(gt.shape, generator=generator)).clamp(0.01, 0.99).requires_grad_(True), gt


def louder(prior, factor):
    """A copy of ``prior`` whose predicted noise is ``factor`` times larger: its raw term gradients scale alike."""
    prior = copy.deepcopy(prior)
    prior.unet.conv_out.weight.data *= factor
    prior.unet.conv_out.bias.data *= factor
    return prior


def gradient_norm(value, pred):
    return torch.autograd.grad(value, pred, retain_graph=True)[0].norm().item()


@pytest.mark.parametrize('gradient', ['score_difference', 'backprop'])
def test_two_priors_100x_apart_reach_the_requested_ratio(tiny_prior, gradient):
    requested = 0.5
    raw, reached = {}, {}
    for factor in (1.0, 100.0):
        loss = DiffLoss(prior=louder(tiny_prior, factor), gradient=gradient, t_range=[400, 600],
                        strength={'eps': requested}, strength_iters=40, seed=0)
        for pred, gt in batches(40, seed=1):  # calibration
            loss.terms(pred, gt)
        assert not loss.strength.measuring
        raw[factor] = loss.strength.term_sums['l_diff_eps'] / loss.strength.reference_sum
        term_norms, l1_norms = [], []
        for pred, gt in batches(40, seed=2):  # other batches, other draws
            term_norms.append(gradient_norm(loss.terms(pred, gt)['l_diff_eps'], pred))
            l1_norms.append(gradient_norm(F.l1_loss(pred, gt), pred))
        reached[factor] = sum(term_norms) / sum(l1_norms)
    print(f'\n{gradient}: raw term / L1 gradient: {raw}; ratio reached: {reached} (requested {requested})')
    assert raw[100.0] / raw[1.0] >= 100 * 0.999
    for ratio in reached.values():
        assert abs(ratio / requested - 1) < 0.1


def test_the_reference_is_the_models_pixel_loss_with_its_weight(tiny_prior):
    strong_pixel = PixelAndDiffusionLoss(
        lambda output, gt: 4.0 * F.l1_loss(output, gt),
        DiffLoss(prior=tiny_prior, strength={'eps': 1.0}, strength_iters=1, seed=0))
    l1_reference = DiffLoss(prior=tiny_prior, strength={'eps': 1.0}, strength_iters=1, seed=0)
    pred, gt = next(batches(1, seed=3))
    strong_pixel(pred, gt)
    l1_reference.terms(pred, gt)
    weight, l1_weight = (loss.strength.weights['l_diff_eps'] for loss in (strong_pixel.diffusion, l1_reference))
    torch.testing.assert_close(weight, 4.0 * l1_weight)


def test_strength_sets_the_h_term_alone_beside_an_absolute_eps_weight(tiny_prior):
    loss = DiffLoss(prior=tiny_prior, eps_weight=2.0, strength={'h': 0.25}, strength_iters=2, seed=0)
    for pred, gt in batches(2, seed=4):
        terms = loss.terms(pred, gt)
    assert set(loss.strength.weights) == {'l_diff_h'} and list(terms) == ['l_diff_eps', 'l_diff_h']
    assert loss.weights['l_diff_eps'] == 2.0


def test_weights_stay_fixed_after_the_calibration(tiny_prior):
    loss = DiffLoss(prior=tiny_prior, strength={'eps': 1.0}, strength_iters=2, seed=0)
    for pred, gt in batches(2, seed=5):
        loss.terms(pred, gt)
    fixed = loss.strength.weights
    for pred, gt in batches(3, seed=6):
        loss.terms(pred, gt)
    assert loss.strength.weights == fixed and loss.strength.measured == 2


def test_tracked_weights_follow_a_change_of_the_ratio(tiny_prior):
    """After its first window, ``strength_update: tracked`` keeps measuring: when the pixel loss's pull doubles, the
    weight doubles (against the same run whose pull stays, on the same batches and draws); ``fixed`` keeps the first
    window's weight."""
    runs = {name: DiffLoss(prior=tiny_prior, strength={'eps': 1.0}, strength_iters=5, strength_update=update, seed=0)
            for name, update in (('fixed', 'fixed'), ('tracked', 'tracked'), ('steady', 'tracked'))}
    for index, (pred, gt) in enumerate(batches(45, seed=8)):
        for name, loss in runs.items():
            scale = 2.0 if index >= 5 and name != 'steady' else 1.0
            loss.terms(pred, gt, reference=scale * F.l1_loss(pred, gt))
        if index == 4:
            first = runs['fixed'].strength.weights['l_diff_eps']
    weights = {name: loss.strength.weights['l_diff_eps'] for name, loss in runs.items()}
    assert weights['fixed'] == first and runs['fixed'].strength.measured == 5
    assert runs['tracked'].strength.measuring and runs['tracked'].strength.measured == 45
    assert weights['tracked'] / weights['steady'] == pytest.approx(2.0, rel=1e-3)


def test_skipped_iterations_do_not_count_as_measurements(tiny_prior):
    loss = DiffLoss(prior=tiny_prior, strength={'eps': 1.0}, strength_iters=2, every=2, seed=0)
    for iteration, (pred, gt) in enumerate(batches(4, seed=7), start=1):
        loss.terms(pred, gt, current_iter=iteration)
    assert loss.strength.measured == 2 and not loss.strength.measuring


@pytest.mark.parametrize('options, message', [
    (dict(strength={'eps': 1.0}, eps_weight=3.0), r"'eps_weight' and 'strength.eps' both set the eps term's weight"),
    (dict(strength={'naturalness': 1.0}), r"option 'strength': \{'naturalness': 1.0\} must map some of \['eps', 'h'\]"),
    (dict(strength={'eps': 0}), "sets every term to 0"),
    (dict(strength={'eps': -1}), r"'strength.eps': -1 must be >= 0"),
    (dict(strength={'eps': 1.0}, strength_iters=0), "'strength_iters': 0 must be >= 1"),
    (dict(strength={'eps': 1.0}, strength_update='slow'), r"'strength_update': 'slow'.*\['fixed', 'tracked'\]"),
    (dict(eps_weight=3.5, strength_iters=20), r"\['strength_iters'\] take effect only with relative weights"),
    (dict(preset='paper', strength_update='tracked'), r"\['strength_update'\] take effect only"),
])
def test_bad_strength_options_name_the_option(tiny_prior, options, message):
    with pytest.raises(ValueError, match=message):
        DiffLoss(prior=tiny_prior, **options)


def test_a_first_call_without_gradient_cannot_measure_and_says_so(tiny_prior):
    pred, gt = next(batches(1, seed=8))
    with pytest.raises(ValueError, match="'strength': no weight measured yet"):
        DiffLoss(prior=tiny_prior, strength={'eps': 1.0})(pred.detach(), gt)
