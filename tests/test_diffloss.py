"""DiffLoss: gradients reach the restorer through the frozen prior; shared noise and t; options."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from basicsr.losses import build_loss
from basicsr_diffloss.losses import DiffLoss
from conftest import BACKPROP


def tiny_restorer():
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1))


def restorer_gradient(restorer, lq, gt, loss_fn, diffloss=None):
    """The restorer's flattened parameter gradient of ``loss_fn(output, gt)``, with DiffLoss's generator reset."""
    restorer.zero_grad()
    if diffloss is not None:
        diffloss.manual_seed(0)
    loss_fn(lq + restorer(lq), gt).backward()
    return torch.cat([p.grad.flatten() for p in restorer.parameters()])


@pytest.fixture
def batch():
    torch.manual_seed(2)
    gt = torch.rand(2, 3, 16, 16)
    return (gt + 0.1 * torch.randn_like(gt)).clamp(0, 1), gt


@pytest.mark.parametrize('term', ['eps', 'h'])
def test_each_term_sends_gradient_to_the_restorer(tiny_prior, batch, term):
    lq, gt = batch
    restorer = tiny_restorer()
    weights = {'eps_weight': 1.0 if term == 'eps' else 0.0, 'h_weight': 1.0 if term == 'h' else 0.0}
    diffloss = DiffLoss(prior=tiny_prior, **BACKPROP, **weights)
    pixel = restorer_gradient(restorer, lq, gt, F.l1_loss)
    diffusion = restorer_gradient(restorer, lq, gt, diffloss, diffloss)
    combined = restorer_gradient(restorer, lq, gt, lambda out, ref: F.l1_loss(out, ref) + diffloss(out, ref), diffloss)
    change = (combined - pixel).norm() / pixel.norm()
    print(f'\n{term} term: |grad| = {diffusion.norm():.3e}, |grad L1| = {pixel.norm():.3e}, '
          f'relative change of the L1 update = {change:.3e}')
    assert diffusion.norm() > 1e-4 * pixel.norm()
    torch.testing.assert_close(combined, pixel + diffusion)
    assert change > 1e-4

    # The authors' released code ran the UNet under no_grad: the same term then sends nothing.
    def authors_version(out, ref):
        with torch.no_grad():
            inert = diffloss(out, ref)
        return F.l1_loss(out, ref) + inert

    assert torch.equal(restorer_gradient(restorer, lq, gt, authors_version, diffloss), pixel)


def test_diffloss_changes_the_optimizer_step(tiny_prior, batch):
    lq, gt = batch
    diffloss = DiffLoss(prior=tiny_prior, **BACKPROP, eps_weight=1.0, h_weight=1.0)
    results = []
    for loss_fn in (F.l1_loss, lambda out, ref: F.l1_loss(out, ref) + diffloss(out, ref)):
        restorer = tiny_restorer()
        optimizer = torch.optim.SGD(restorer.parameters(), lr=0.1)  # Adam's first step is sign(grad): too coarse
        restorer_gradient(restorer, lq, gt, loss_fn)
        optimizer.step()
        results.append(torch.cat([p.detach().flatten() for p in restorer.parameters()]))
    step_change = (results[0] - results[1]).norm()
    print(f'\nparameter change between the L1 step and the L1 + DiffLoss step: {step_change:.3e}')
    assert step_change > 1e-5


def test_noise_and_t_are_shared_and_the_target_branch_keeps_no_graph(tiny_prior, batch, monkeypatch):
    lq, gt = batch
    pred = lq.clone().requires_grad_(True)
    calls = []
    original_forward = tiny_prior.forward

    def recording_forward(x_t, t, **kwargs):
        eps, h = original_forward(x_t, t, **kwargs)
        calls.append(dict(x_t=x_t, t=t, grad_enabled=torch.is_grad_enabled(), eps=eps, h=h))
        return eps, h

    monkeypatch.setattr(tiny_prior, 'forward', recording_forward)
    DiffLoss(prior=tiny_prior, **BACKPROP, eps_weight=1.0, h_weight=1.0, t_range=[0, 999])(pred, gt)
    target_call, pred_call = calls
    assert torch.equal(target_call['t'], pred_call['t'])
    abar = tiny_prior.abar(pred_call['t'])
    noise_of = {name: (call['x_t'] - abar.sqrt() * (image * 2 - 1)) / (1 - abar).sqrt()
                for name, call, image in (('target', target_call, gt), ('pred', pred_call, pred.detach()))}
    torch.testing.assert_close(noise_of['target'], noise_of['pred'], rtol=1e-4, atol=1e-4)
    assert not target_call['grad_enabled']
    assert target_call['eps'].grad_fn is None and target_call['h'].grad_fn is None
    assert pred_call['eps'].grad_fn is not None and pred_call['h'].grad_fn is not None


def test_prior_gets_no_gradient_and_is_unchanged_by_a_step(tiny_prior, batch):
    lq, gt = batch
    restorer = tiny_restorer()
    diffloss = DiffLoss(prior=tiny_prior, **BACKPROP, eps_weight=1.0, h_weight=1.0)
    before = copy.deepcopy(tiny_prior.state_dict())
    optimizer = torch.optim.Adam(list(restorer.parameters()) + list(diffloss.parameters()), lr=1e-2)
    restorer_gradient(restorer, lq, gt, diffloss)
    optimizer.step()
    assert all(p.grad is None for p in diffloss.parameters())
    for name, value in tiny_prior.state_dict().items():
        assert torch.equal(value, before[name]), name


@pytest.mark.parametrize('shape', [(1, 3, 30, 37), (2, 3, 5, 3), (1, 1, 18, 18)])
@pytest.mark.parametrize('crop_size', [None, 8, 64])
def test_any_image_size_and_one_channel_images_are_handled(tiny_prior, shape, crop_size):
    pred = torch.rand(shape, requires_grad=True)
    terms = DiffLoss(prior=tiny_prior, **BACKPROP, h_weight=1.0, crop_size=crop_size).terms(pred, torch.rand(shape))
    assert list(terms) == ['l_diff_eps', 'l_diff_h']
    sum(terms.values()).backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0


def test_input_range_is_mapped_to_the_prior_range(tiny_prior, batch):
    pred, gt = batch
    values = []
    for scale, input_range in ((1, [0, 1]), (255, [0, 255])):
        values.append(DiffLoss(prior=tiny_prior, input_range=input_range, eps_weight=3.5, seed=3)(pred * scale, gt * scale))
    torch.testing.assert_close(values[0], values[1])


def test_num_samples_averages_several_draws(tiny_prior, batch, monkeypatch):
    pred, gt = batch
    batch_sizes = []
    original_forward = tiny_prior.forward
    monkeypatch.setattr(tiny_prior, 'forward',
                        lambda x_t, t, **kw: batch_sizes.append(len(t)) or original_forward(x_t, t, **kw))
    DiffLoss(prior=tiny_prior, num_samples=3, **BACKPROP, eps_weight=2.0)(pred, gt)
    assert batch_sizes == [3 * len(pred)] * 2  # the GT branch, then the restored branch
    batch_sizes.clear()
    DiffLoss(prior=tiny_prior, num_samples=3, eps_weight=3.5)(pred, gt)
    assert batch_sizes == [2 * 3 * len(pred)]  # score difference: both branches in one batched call


def test_terms_are_weighted_and_the_sum_is_the_loss(tiny_prior, batch):
    pred, gt = batch
    loss = DiffLoss(prior=tiny_prior, **BACKPROP, loss_weight=2.0, eps_weight=3.0, h_weight=0.5, seed=4)
    terms = loss.terms(pred, gt)
    loss.manual_seed(4)
    torch.testing.assert_close(loss(pred, gt), terms['l_diff_eps'] + terms['l_diff_h'])
    unit_terms = DiffLoss(prior=tiny_prior, **BACKPROP, eps_weight=1.0, h_weight=1.0, seed=4).terms(pred, gt)
    torch.testing.assert_close(terms['l_diff_eps'], 6.0 * unit_terms['l_diff_eps'])
    torch.testing.assert_close(terms['l_diff_h'], 1.0 * unit_terms['l_diff_h'])


def test_built_from_yaml_style_options(tiny_unet_config, batch):
    loss = build_loss({'type': 'DiffLoss', 'prior': {'type': 'DiffusionPrior', 'unet': tiny_unet_config},
                       'eps_weight': 1.0, 'h_weight': 0.1, 't_range': [100, 900], 'crop_size': 8,
                       'gradient': 'backprop'})
    assert loss(*batch).ndim == 0


@pytest.mark.parametrize('options, message', [
    ({'eps_weight': -1.0}, "'eps_weight': -1.0 must be >= 0"),
    ({'h_weight': '1e-3'}, "'h_weight': '1e-3' is not a number"),
    ({'eps_weight': 0, 'h_weight': 0}, "'eps_weight' and 'h_weight' are both 0"),
    ({'t_range': [0, 1000]}, "'t_range'.*<= 999"),
    ({'t_range': [500, 100]}, "'t_range'"),
    ({'crop_size': 9}, "'crop_size': 9 is not a multiple of the prior's size factor 2"),
    ({'num_samples': 0}, "'num_samples'"),
    ({'input_range': [1, 0]}, "'input_range'"),
    ({'t_range': [5]}, "'t_range'"),
])
def test_bad_options_name_the_option(tiny_prior, options, message):
    with pytest.raises(ValueError, match=message):
        DiffLoss(prior=tiny_prior, **options)


def test_images_with_channels_the_prior_cannot_take_are_refused(tiny_prior):
    with pytest.raises(ValueError, match='4 channels but the prior takes 3'):
        DiffLoss(prior=tiny_prior)(torch.rand(1, 4, 8, 8), torch.rand(1, 4, 8, 8))


def test_presets_fill_the_options_that_are_not_given(tiny_prior):
    paper = DiffLoss(prior=tiny_prior, preset='paper')
    assert (dict(paper.weights), paper.t_range) == ({'l_diff_eps': 1e-3, 'l_diff_h': 1e-6}, (0, 999))
    assert (paper.space, paper.gradient, paper.t_weighting) == ('eps', 'backprop', 'uniform')
    default = DiffLoss(prior=tiny_prior)
    assert (dict(default.weights), default.t_range) == ({'l_diff_eps': 1.0, 'l_diff_h': 0.0}, (200, 800))
    assert default.gradient == 'score_difference' and default.strength.strength == {'l_diff_eps': 2.0}
    backprop = DiffLoss(prior=tiny_prior, preset='backprop')
    assert backprop.gradient == 'backprop' and backprop.strength.strength == {'l_diff_eps': 1.0}
    absolute = DiffLoss(prior=tiny_prior, eps_weight=3.5)  # an absolute weight replaces the preset's strength
    assert absolute.strength is None and dict(absolute.weights) == {'l_diff_eps': 3.5, 'l_diff_h': 0.0}
    with_h = DiffLoss(prior=tiny_prior, h_weight=0.5)  # the eps term keeps the preset's strength
    assert with_h.strength.strength == {'l_diff_eps': 2.0} and with_h.weights['l_diff_h'] == 0.5
    mixed = DiffLoss(prior=tiny_prior, preset='paper', eps_weight=2.0)
    assert (mixed.weights['l_diff_eps'], mixed.weights['l_diff_h']) == (2.0, 1e-6)
    with pytest.raises(ValueError, match="'preset'"):
        DiffLoss(prior=tiny_prior, preset='strong')
