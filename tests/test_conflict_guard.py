"""DiffLoss's conflict guard: how much of the pixel loss's descent a term cancels on the restorer's weights, the cap on
relative weights, the warning, the log and resume; and how presets and given options resolve."""
import logging

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from basicsr_diffloss.losses import DiffLoss
from basicsr_diffloss.losses.conflict_guard import ConflictGuard
from basicsr_diffloss.losses.method_presets import resolve_method
from basicsr_diffloss.options import OptionError
from test_relative_strength import louder


class Messages(logging.Handler):
    """The messages of BasicSR's root logger (which does not propagate to pytest's caplog)."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def basicsr_log():
    handler = Messages()
    logger = logging.getLogger('basicsr')
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler.messages
    logger.removeHandler(handler)
    logger.setLevel(level)


def flat_gradient(value, parameters):
    return torch.cat([grad.flatten() for grad in torch.autograd.grad(value, parameters, retain_graph=True)])


def restorer_and_batch(seed=0):
    torch.manual_seed(seed)
    net = nn.Conv2d(3, 3, 3, padding=1)
    generator = torch.Generator().manual_seed(seed)
    lq = torch.rand(4, 3, 16, 16, generator=generator)
    gt = (lq + 0.2 * torch.rand(lq.shape, generator=generator)).clamp(0, 1)
    return net, lq, gt


def test_conflict_and_cosine_equal_a_reference_computed_by_hand():
    net, lq, gt = restorer_and_batch()
    parameters = list(net.parameters())
    output = net(lq)
    pixel = F.l1_loss(output, gt)
    opposing = -F.mse_loss(output, gt)  # pulls the output away from the GT: against the pixel loss
    guard = ConflictGuard(0.1, 1, ['l_diff_eps'])
    guard.measure(pixel, {'l_diff_eps': opposing}, parameters)
    guard.report({'l_diff_eps': 3.0}, {}, current_iter=1)
    g_pix, g_term = flat_gradient(pixel, parameters), flat_gradient(opposing, parameters)
    expected_conflict = -3.0 * torch.dot(g_pix, g_term) / torch.dot(g_pix, g_pix)
    expected_cosine = F.cosine_similarity(g_pix, g_term, dim=0)
    assert guard.last['conflict_diff_eps'] == pytest.approx(expected_conflict.item(), rel=1e-5)
    assert guard.last['cos_diff_eps'] == pytest.approx(expected_cosine.item(), rel=1e-5)
    assert expected_conflict > 0 and expected_cosine < 0
    # the cap is the factor at which the conflict equals max_conflict
    assert guard.cap('l_diff_eps') * expected_conflict.item() / 3.0 == pytest.approx(0.1, rel=1e-5)


def test_a_term_that_helps_the_pixel_loss_is_never_capped():
    net, lq, gt = restorer_and_batch()
    output = net(lq)
    guard = ConflictGuard(0.1, 1, ['l_diff_eps'])
    guard.measure(F.l1_loss(output, gt), {'l_diff_eps': F.mse_loss(output, gt)}, list(net.parameters()))
    assert guard.cap('l_diff_eps') == float('inf')


def test_the_guard_warns_after_three_checks_above_max_conflict(basicsr_log):
    net, lq, gt = restorer_and_batch()
    guard = ConflictGuard(0.1, 1, ['l_diff_eps'])
    for iteration in range(1, 4):
        output = net(lq)
        guard.measure(F.l1_loss(output, gt), {'l_diff_eps': -F.mse_loss(output, gt)}, list(net.parameters()))
        guard.report({'l_diff_eps': 10.0}, {}, iteration)
        warned = [message for message in basicsr_log if 'DiffLoss guard' in message]
        assert len(warned) == (1 if iteration == 3 else 0)
    print(warned[0])
    assert "l_diff_eps pulls the restorer against the pixel loss on 3 checks running" in warned[0]
    assert "'strength'" in warned[0] and "'eps_weight'/'h_weight'" in warned[0]


def train(loss, steps, seed=0, parameters=True):
    """A conv restorer trained with L1 + ``loss`` (its parameters passed to the guard unless ``parameters`` is false);
    returns the restorer."""
    net, _, _ = restorer_and_batch(seed)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(seed + 1)
    for iteration in range(1, steps + 1):
        lq = torch.rand(4, 3, 16, 16, generator=generator)
        gt = (lq * 1.3).clamp(0, 1)
        output = net(lq)
        pixel = F.l1_loss(output, gt)
        terms = loss.terms(output, gt, iteration, reference=pixel,
                           parameters=list(net.parameters()) if parameters else None)
        optimizer.zero_grad()
        (pixel + sum(terms.values())).backward()
        optimizer.step()
    return net


def test_the_worst_recent_check_sets_the_cap():
    guard = ConflictGuard(0.1, 1, ['l_diff_eps'])
    guard.checks, guard.recent['l_diff_eps'] = 3, [-0.5, 0.4, -0.2]  # helped, opposed, helped
    assert guard.cap('l_diff_eps') == pytest.approx(0.1 / 0.4)
    guard.recent['l_diff_eps'] = [-0.5, -0.1]
    assert guard.cap('l_diff_eps') == float('inf')


def test_relative_weights_are_capped_to_max_conflict_and_the_cap_transfers_across_a_100x_prior(tiny_prior):
    capped = {}
    for factor in (1.0, 100.0):
        loss = DiffLoss(prior=louder(tiny_prior, factor), strength={'eps': 2.0}, strength_iters=5, max_conflict=0.05,
                        guard_every=1, t_range=[400, 600], seed=0)
        train(loss, 8)
        rule = loss.strength.weights['l_diff_eps']
        capped[factor] = (min(rule, loss.guard.cap('l_diff_eps')), rule)
        # whatever the cap, the conflict measured at the applied weight follows the averaged sums
        assert loss.guard.last['conflict_diff_eps'] == pytest.approx(
            capped[factor][0] * loss.guard._check['l_diff_eps'][0], rel=1e-6)
    # the raw term is 100x louder: both the strength rule and the cap give a weight 100x smaller
    assert capped[1.0][0] / capped[100.0][0] == pytest.approx(100, rel=0.05)
    assert capped[1.0][1] / capped[100.0][1] == pytest.approx(100, rel=0.05)


def test_the_cap_lowers_the_applied_weight_when_the_term_opposes(tiny_prior):
    loss = DiffLoss(prior=tiny_prior, strength={'eps': 2.0}, strength_iters=3, max_conflict=0.1, guard_every=1,
                    seed=0)
    train(loss, 3)
    loss.guard.recent['l_diff_eps'] = [1e3]  # a term that opposed strongly on a recent check
    net, lq, gt = restorer_and_batch()
    output = net(lq)
    applied = loss.terms(output, gt, 4, reference=F.l1_loss(output, gt))['l_diff_eps']
    rule = loss.strength.weights['l_diff_eps']
    assert loss.guard.cap('l_diff_eps') == pytest.approx(0.1 / 1e3)
    assert loss.guard.cap('l_diff_eps') < rule
    loss_uncapped = DiffLoss(prior=tiny_prior, strength={'eps': 2.0}, strength_iters=3, max_conflict=False, seed=0)
    train(loss_uncapped, 3)
    reference = loss_uncapped.terms(output, gt, 4, reference=F.l1_loss(output, gt))['l_diff_eps']
    assert applied.item() < reference.item() * 0.01


def test_without_parameters_the_guard_never_checks_and_null_turns_it_off(tiny_prior):
    loss = DiffLoss(prior=tiny_prior, strength={'eps': 1.0}, strength_iters=3, guard_every=1, seed=0)
    train(loss, 4, parameters=False)
    assert loss.guard.checks == 0 and loss.guard.last == {}
    assert DiffLoss(prior=tiny_prior, max_conflict=False).guard is None
    with pytest.raises(OptionError, match="'guard_every' takes effect only with the guard"):
        DiffLoss(prior=tiny_prior, max_conflict=False, guard_every=10)
    with pytest.raises(ValueError, match="'max_conflict': 2 must be <= 1"):
        DiffLoss(prior=tiny_prior, max_conflict=2)


def test_guard_state_round_trips(tiny_prior):
    loss = DiffLoss(prior=tiny_prior, strength={'eps': 1.0}, strength_iters=3, guard_every=1, seed=0)
    train(loss, 4)
    other = DiffLoss(prior=tiny_prior, strength={'eps': 1.0}, strength_iters=3, guard_every=1, seed=0)
    other.guard.load_state_dict(loss.guard.state_dict())
    assert other.guard.state_dict() == loss.guard.state_dict()
    assert other.guard.cap('l_diff_eps') == loss.guard.cap('l_diff_eps')


def test_loss_weight_zero_runs_no_prior(tiny_prior, monkeypatch):
    loss = DiffLoss(prior=tiny_prior, loss_weight=0, seed=0)
    monkeypatch.setattr(loss.prior, 'forward', lambda *args, **kwargs: pytest.fail('the prior ran'))
    net, lq, gt = restorer_and_batch()
    assert loss.terms(net(lq), gt, 1) == {}


@pytest.mark.parametrize('declared, data, message', [
    ([0, 255], (0, 1), 'spans only'),
    ([-1, 1], (0, 1), 'spans only'),
    ([0, 1], (0, 255), 'holds values in'),
])
def test_an_input_range_that_does_not_fit_the_data_is_refused(tiny_prior, declared, data, message):
    loss = DiffLoss(prior=tiny_prior, input_range=declared, strength={'eps': 1.0}, strength_iters=2, seed=0)
    generator = torch.Generator().manual_seed(0)
    with pytest.raises(OptionError, match=rf"'input_range': .* {message}") as error:
        for _ in range(8):
            gt = data[0] + (data[1] - data[0]) * torch.rand(2, 3, 16, 16, generator=generator)
            loss.terms(gt.clone().requires_grad_(True), gt, None)
    print(error.value)


def test_strength_h_alone_keeps_the_presets_relative_eps():
    options, sources = resolve_method('default', dict(strength={'h': 0.25}))
    assert options['strength'] == {'eps': 2.0, 'h': 0.25}
    assert sources['strength'] == 'eps: preset default, h: given'
    assert options['eps_weight'] is None and options['h_weight'] is None


def test_an_absolute_weight_makes_its_term_absolute_beside_relative_ones():
    options, sources = resolve_method('default', dict(eps_weight=3.5, strength={'h': 0.5}))
    assert options['strength'] == {'h': 0.5} and options['eps_weight'] == 3.5 and sources['eps_weight'] == 'given'
    options, _ = resolve_method('default', dict(eps_weight=3.5))
    assert options['strength'] is None and options['max_conflict'] == 0.1
    with pytest.raises(OptionError, match="'eps_weight' and 'strength.eps' both set"):
        resolve_method('default', dict(eps_weight=1.0, strength={'eps': 1.0}))


def test_the_start_up_log_names_the_resolved_method_and_its_sources(tiny_prior, basicsr_log):
    DiffLoss(prior=tiny_prior, strength={'h': 0.25}, t_range=[100, 300])
    line = next(message for message in basicsr_log if message.startswith('DiffLoss method:'))
    print(line)
    assert 'gradient score_difference (preset default)' in line and 't_range [100, 300], t_weighting' in line
    assert "l_diff_eps 2 x the pixel loss's gradient (strength (preset default))" in line
    assert "l_diff_h 0.25 x the pixel loss's gradient (strength (given))" in line
    assert 'max_conflict 0.1 (preset default)' in line
