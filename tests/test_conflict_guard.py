"""DiffLoss's conflict guard: the projection of the terms' gradient on the restorer's weights against the pixel loss's,
what it logs and warns, resume; and how presets and given options resolve."""
import logging

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from basicsr_diffloss.losses import DiffLoss
from basicsr_diffloss.losses import conflict_guard
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


def projected_by_hand(g_pixels, g_terms, max_conflict, beta=0.9):
    """Our reference, weight by weight in plain Python: both momenta as Adam's first moment; where the terms'
    momentum opposes the pixel loss's by more than max_conflict of it, it is held at that share; the gradient handed on
    is the one that makes the terms' momentum so. Returns the handed-on gradient of each step."""
    size = len(g_pixels[0])
    pixel_m, term_m, out = [0.0] * size, [0.0] * size, []
    for g_pix, g_term in zip(g_pixels, g_terms):
        step = []
        for i in range(size):
            pixel_m[i] = beta * pixel_m[i] + (1 - beta) * float(g_pix[i])
            candidate = beta * term_m[i] + (1 - beta) * float(g_term[i])
            if candidate * pixel_m[i] < 0 and abs(candidate) > max_conflict * abs(pixel_m[i]):
                candidate = -max_conflict * pixel_m[i]
            step.append((candidate - beta * term_m[i]) / (1 - beta))
            term_m[i] = candidate
        out.append(torch.tensor(step))
    return out


def test_the_projection_equals_a_reference_computed_by_hand():
    net, lq, gt = restorer_and_batch()
    parameters = list(net.parameters())
    guard = ConflictGuard(0.1)
    g_pixels, g_terms, handed = [], [], []
    for step in range(3):
        output = net(lq[:, :, step:])
        pixel = F.l1_loss(output, gt[:, :, step:])
        # red down, green and blue up: opposes the pixel loss on some weights; it changes sign at the third step
        term = (1 if step < 2 else -1) * (output[:, :1].mean() - output[:, 1:].mean())
        projected = guard.project(pixel, {'l_diff_eps': term}, parameters, current_iter=step + 1)['l_diff_eps']
        assert projected.item() == pytest.approx(term.item())  # the value is the term's; the gradient projected
        g_pixels.append(flat_gradient(pixel, parameters))
        g_terms.append(flat_gradient(term, parameters))
        handed.append(flat_gradient(projected, parameters))
    expected = projected_by_hand(g_pixels, g_terms, 0.1)
    for step in range(3):
        assert torch.allclose(handed[step], expected[step], rtol=1e-4, atol=1e-7), step
    assert not torch.allclose(expected[0], g_terms[0]) and (expected[0] == g_terms[0]).any()  # some held, some not
    g_pix, g_term = g_pixels[-1], g_terms[-1]
    assert guard.last['conflict_diff'] == pytest.approx((-g_pix @ g_term / (g_pix @ g_pix)).item(), rel=1e-5)
    assert guard.last['cos_diff'] == pytest.approx(F.cosine_similarity(g_pix, g_term, dim=0).item(), rel=1e-5)
    assert guard.last['kept_diff'] == pytest.approx((expected[-1] @ g_term / (g_term @ g_term)).item(), rel=1e-4)
    # the momenta Adam would hold (beta1 0.9): on every weight the total keeps the pixel loss's sign and at least
    # 1 - max_conflict of its size
    pixel_m = sum(0.9**(2 - step) * 0.1 * g_pixels[step] for step in range(3))
    total_m = pixel_m + sum(0.9**(2 - step) * 0.1 * handed[step] for step in range(3))
    assert (pixel_m * total_m >= (0.9 - 1e-4) * pixel_m.square()).all()


def test_a_term_that_agrees_with_the_pixel_loss_passes_unchanged():
    net, lq, gt = restorer_and_batch()
    parameters = list(net.parameters())
    output = net(lq)
    pixel = F.l1_loss(output, gt)
    guard = ConflictGuard(0.1)
    projected = guard.project(pixel, {'l_diff_eps': 2.0 * pixel}, parameters, current_iter=1)['l_diff_eps']
    assert torch.allclose(flat_gradient(projected, parameters), 2.0 * flat_gradient(pixel, parameters))
    assert guard.last['kept_diff'] == pytest.approx(1.0)
    assert guard.last['conflict_diff'] == pytest.approx(-2.0, rel=1e-5)


def test_a_skipped_step_costs_nothing_and_leaves_the_momenta(monkeypatch):
    net, lq, gt = restorer_and_batch()
    parameters = list(net.parameters())
    guard = ConflictGuard(0.1)
    output = net(lq)
    guard.project(F.l1_loss(output, gt), {'l_diff_eps': 2.0 * F.l1_loss(output, gt)}, parameters, 1)
    pixel_m, term_m = guard.pixel_momentum.clone(), guard.term_momentum.clone()
    monkeypatch.setattr(conflict_guard, '_gradient', lambda *args: pytest.fail('a skipped step differentiated'))
    assert guard.project(F.l1_loss(output, gt), {}, parameters, 2) == {}
    assert torch.equal(guard.term_momentum, term_m) and torch.equal(guard.pixel_momentum, pixel_m)


class BackwardCounter:
    """Counts the backward passes through a module (its full backward hook fires once per pass)."""

    def __init__(self, module):
        self.count = 0
        module.register_full_backward_hook(self.hook)

    def hook(self, *args):
        self.count += 1


@pytest.mark.filterwarnings("ignore:Full backward hook is firing")
def test_a_diffloss_that_carries_the_pixel_loss_differentiates_the_restorer_twice_with_the_same_gradient(
        tiny_prior):
    """With ``reference_name`` the guarded step's total has the gradient of the pixel loss plus the projected terms,
    as when the caller adds the pixel loss itself, at two restorer backward passes instead of three."""
    gradients, passes = {}, {}
    for carry in (False, True):
        loss = DiffLoss(prior=tiny_prior, strength={'eps': 2.0}, strength_iters=2, start_iter=0, seed=0)
        net, lq, gt = restorer_and_batch()
        counter = BackwardCounter(net)
        parameters = list(net.parameters())
        for iteration in (1, 2, 3):
            output = net(lq)
            pixel = F.l1_loss(output, gt)
            counter.count = 0
            terms = loss.terms(output, gt, iteration, reference=pixel, parameters=parameters,
                               reference_name='l_pix' if carry else None)
            if carry:
                assert list(terms)[0] == 'l_pix' and terms['l_pix'].item() == pixel.item()
                total = sum(terms.values())
            else:
                assert 'l_pix' not in terms
                total = pixel + sum(terms.values())
            gradients[carry] = torch.cat([grad.flatten() for grad in torch.autograd.grad(total, parameters)])
            passes[carry] = counter.count
    assert torch.allclose(gradients[True], gradients[False], rtol=1e-5, atol=1e-7)
    assert passes == {False: 3, True: 2}


def train_with(losses, steps, seed=0):
    """A conv restorer trained by Adam (lr 1e-2) to brighten random images by 1.3, its loss the sum of
    ``losses(output, gt, l1, iteration, parameters)`` (a dict); returns the L1 of each step."""
    net, _, _ = restorer_and_batch(seed)
    parameters = list(net.parameters())
    optimizer = torch.optim.Adam(parameters, lr=1e-2)
    generator = torch.Generator().manual_seed(seed + 1)
    pixels = []
    for iteration in range(1, steps + 1):
        lq = torch.rand(4, 3, 16, 16, generator=generator)
        gt = (lq * 1.3).clamp(0, 1)
        output = net(lq)
        pixel = F.l1_loss(output, gt)
        optimizer.zero_grad()
        sum(losses(output, gt, pixel, iteration, parameters).values()).backward()
        optimizer.step()
        pixels.append(pixel.item())
    return pixels


def hostile_training(guard, steps=150, seed=0):
    """L1 plus a term 20x its size that pulls the output away from the GT (through ``guard`` unless it is None);
    returns the L1 at the start and at the end."""
    def losses(output, gt, pixel, iteration, parameters):
        terms = {'l_diff_eps': -20.0 * F.mse_loss(output, gt.flip(-1))}
        if guard is not None:
            terms = guard.project(pixel, terms, parameters, iteration)
        return dict(terms, l_pix=pixel)

    pixels = train_with(losses, steps, seed)
    return pixels[0], sum(pixels[-10:]) / 10


def test_the_guard_keeps_a_restorer_learning_under_a_term_that_fights_it(basicsr_log, monkeypatch):
    monkeypatch.setattr(conflict_guard, 'WINDOW', 50)
    plain = hostile_training(None)[1]
    first, guarded = hostile_training(ConflictGuard(0.1))
    print(f'L1 at start {first:.4f}; after 150 Adam steps: unguarded {plain:.4f}, guarded {guarded:.4f}')
    assert plain > first  # unguarded, the term wins: L1 rises
    assert guarded < 0.5 * first  # guarded, the restorer learns its task
    warned = [message for message in basicsr_log if message.startswith('DiffLoss guard')]
    assert len(warned) == 1 and 'kept' in warned[0] and "'strength'" in warned[0] and "'start_iter'" in warned[0]
    print(warned[0])


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


def test_the_projected_term_transfers_across_a_100x_prior(tiny_prior):
    gradients = {}
    for factor in (1.0, 100.0):
        loss = DiffLoss(prior=louder(tiny_prior, factor), strength={'eps': 2.0}, strength_iters=5, max_conflict=0.1,
                        t_range=[400, 600], seed=0)
        net = train(loss, 5)
        net, lq, gt = restorer_and_batch()
        output = net(lq)
        parameters = list(net.parameters())
        term = loss.terms(output, gt, 6, reference=F.l1_loss(output, gt), parameters=parameters)['l_diff_eps']
        gradients[factor] = flat_gradient(term, parameters)
    # the raw term is 100x louder: the strength rule's weight is 100x smaller and the projected gradient the same
    assert torch.allclose(gradients[1.0], gradients[100.0], rtol=0.05, atol=1e-6 * gradients[1.0].abs().max())


def test_without_parameters_the_guard_does_nothing_and_false_turns_it_off(tiny_prior):
    loss = DiffLoss(prior=tiny_prior, strength={'eps': 1.0}, strength_iters=3, seed=0)
    train(loss, 4, parameters=False)
    assert loss.guard.last == {} and not loss.guard.kept
    assert DiffLoss(prior=tiny_prior, max_conflict=False).guard is None
    with pytest.raises(ValueError, match="'max_conflict': 2 must be <= 1"):
        DiffLoss(prior=tiny_prior, max_conflict=2)


def test_guard_state_round_trips(tiny_prior):
    loss = DiffLoss(prior=tiny_prior, strength={'eps': 1.0}, strength_iters=3, seed=0)
    train(loss, 4)
    other = DiffLoss(prior=tiny_prior, strength={'eps': 1.0}, strength_iters=3, seed=0)
    other.guard.load_state_dict(loss.guard.state_dict())
    mine, theirs = loss.guard.state_dict(), other.guard.state_dict()
    assert torch.equal(mine.pop('pixel_momentum'), theirs.pop('pixel_momentum'))
    assert torch.equal(mine.pop('term_momentum'), theirs.pop('term_momentum'))
    assert mine == theirs and len(loss.guard.kept) == 4


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
    assert options['strength'] is None and options['max_conflict'] == 0.0
    with pytest.raises(OptionError, match="'eps_weight' and 'strength.eps' both set"):
        resolve_method('default', dict(eps_weight=1.0, strength={'eps': 1.0}))


def test_the_start_up_log_names_the_resolved_method_and_its_sources(tiny_prior, basicsr_log):
    DiffLoss(prior=tiny_prior, strength={'h': 0.25}, t_range=[100, 300])
    line = next(message for message in basicsr_log if message.startswith('DiffLoss method:'))
    print(line)
    assert 'gradient score_difference (preset default)' in line and 't_range [100, 300], t_weighting' in line
    assert "l_diff_eps 2 x the pixel loss's gradient (strength (preset default))" in line
    assert "l_diff_h 0.25 x the pixel loss's gradient (strength (given))" in line
    assert 'max_conflict 0 (preset default)' in line
