"""The pixel loss leads: the term joins after a share of the run (start_iter auto) and backs off when the pixel loss
rises after it joined (backoff_margin, backoff_patience)."""
import copy
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from basicsr_diffloss.losses import DiffLoss
from basicsr_diffloss.losses.backoff import Backoff
from basicsr_diffloss.options import OptionError
from test_conflict_guard import basicsr_log, train_with  # noqa: F401  (basicsr_log: a fixture)


def applied(loss, iterations, images):
    pred, gt = images
    pred = pred.clone().requires_grad_(True)
    return [bool(loss.terms(pred, gt, iteration)) for iteration in iterations]


@pytest.fixture
def images():
    generator = torch.Generator().manual_seed(0)
    gt = torch.rand(2, 3, 16, 16, generator=generator)
    return (gt + 0.1 * torch.rand(gt.shape, generator=generator)).clamp(0, 1), gt


def test_auto_start_joins_after_40_percent_of_the_run_and_says_so(tiny_prior, images, basicsr_log):
    loss = DiffLoss(prior=tiny_prior, seed=0)
    loss.set_training_length(10)
    assert applied(loss, range(1, 7), images) == [False, False, False, True, True, True]
    assert 'DiffLoss schedule: the term joins at iteration 4 (start_iter auto: 40% of total_iter 10).' in basicsr_log
    joins = [message for message in basicsr_log if message.startswith('DiffLoss joins')]
    assert joins == ['DiffLoss joins the training at iteration 4 (start_iter auto: 40% of total_iter 10).']
    method = next(message for message in basicsr_log if message.startswith('DiffLoss method:'))
    assert 'start_iter auto (40% of train.total_iter) (preset default)' in method


def test_a_run_resumed_after_the_join_says_the_term_is_on_instead_of_joining_again(tiny_prior, images, basicsr_log):
    loss = DiffLoss(prior=tiny_prior, seed=0)
    loss.set_training_length(10)
    assert applied(loss, (7, 8), images) == [True, True]  # resumed at 7, after the join at 4
    assert [message for message in basicsr_log if message.startswith('DiffLoss is on') or 'joins the training' in
            message] == ['DiffLoss is on since iteration 4 (start_iter auto: 40% of total_iter 10); training goes on '
                         'at iteration 7.']


def test_a_given_start_iter_wins_and_paper_starts_at_once(tiny_prior, images):
    loss = DiffLoss(prior=tiny_prior, start_iter=2, seed=0)
    loss.set_training_length(10)
    assert applied(loss, (1, 2), images) == [False, True]
    paper = DiffLoss(prior=tiny_prior, preset='paper', seed=0)
    paper.set_training_length(1000)
    assert applied(paper, (1, ), images) == [True] and paper.backoff is None


def test_auto_start_without_a_run_length_joins_at_once_with_a_warning(tiny_prior, images, basicsr_log):
    loss = DiffLoss(prior=tiny_prior, seed=0)
    assert applied(loss, (1, ), images) == [True]
    assert any("the run's length is unknown" in message and 'set_training_length' in message
               for message in basicsr_log)


@pytest.mark.parametrize('options, message', [
    (dict(start_iter='later'), "'start_iter': 'later' must be an iteration (an integer >= 0) or 'auto'"),
    (dict(backoff_margin=False, backoff_patience=10), "'backoff_patience' takes effect only with the back-off on"),
    (dict(backoff_margin=-0.1), "'backoff_margin'"),
])
def test_bad_start_and_backoff_options_are_refused(tiny_prior, options, message):
    with pytest.raises(OptionError, match=re.escape(message)):
        DiffLoss(prior=tiny_prior, **options)


def test_backoff_halves_then_stops_the_term_and_keeps_its_guarantee(basicsr_log):
    """The guarantee: the term never runs through more than 2 * patience consecutive iterations with the smoothed
    pixel loss more than margin above its value at joining."""
    backoff = Backoff(margin=0.1, patience=5)
    factors, above_while_on, run = [], 0, 0
    for iteration in range(1, 200):
        # the pixel loss falls until the join at 50, then climbs 1% per iteration
        value = 1.0 - 0.002 * iteration if iteration < 50 else 0.9 * 1.01**(iteration - 50)
        factor = backoff.observe(torch.tensor(value), iteration >= 50, iteration)
        factors.append(factor)
        above = backoff.at_join is not None and backoff.smoothed > 1.1 * backoff.at_join
        run = run + 1 if above and factor > 0 else 0
        above_while_on = max(above_while_on, run)
    assert factors[:49] == [1.0] * 49
    assert sorted(set(factors)) == [0.0, 0.5, 1.0] and factors[-1] == 0.0
    first_half, first_off = factors.index(0.5), factors.index(0.0)
    assert first_off - first_half == 5 and above_while_on <= 2 * 5
    warnings = [message for message in basicsr_log if message.startswith('DiffLoss back-off')]
    assert len(warnings) == 2 and 'halves' in warnings[0] and 'turns the diffusion terms off' in warnings[1]
    assert "'backoff_margin'" in warnings[1] and "'start_iter'" in warnings[1]
    print(warnings[1])


def test_a_noisy_but_falling_pixel_loss_never_backs_off():
    generator = torch.Generator().manual_seed(0)
    backoff = Backoff(margin=0.1, patience=50)
    for iteration in range(1, 3001):
        value = (1.0 - 0.5 * iteration / 3000) * (1 + 0.3 * torch.randn((), generator=generator))
        assert backoff.observe(value, iteration >= 400, iteration) == 1.0


def test_backoff_state_round_trips_through_the_training_state(tiny_prior, images):
    loss = DiffLoss(prior=tiny_prior, start_iter=0, strength_iters=2, seed=0)
    applied(loss, (1, 2, 3), images)
    other = DiffLoss(prior=tiny_prior, start_iter=0, strength_iters=2, seed=1)
    other.load_training_state(loss.training_state())
    assert other.backoff.state_dict() == loss.backoff.state_dict() and loss.backoff.smoothed is not None
    assert torch.equal(other.rng_state(), loss.rng_state())
    third = DiffLoss(prior=tiny_prior, start_iter=0, strength_iters=2, seed=1)
    third.load_training_state(loss.training_state(), random_state=False)  # another number of processes
    assert third.backoff.state_dict() == loss.backoff.state_dict()
    assert not torch.equal(third.rng_state(), loss.rng_state())


def hostile_prior(prior):
    """``prior`` predicting noise that points away from the image: the score difference then pushes the restored
    image away from the ground truth."""
    prior.forward = lambda x, t, features_only=False: (-3.0 * x, x)
    return prior


def train_conv(loss, steps=600):
    """L1 plus ``loss`` called as the model calls it; the L1 of each step."""
    return train_with(lambda output, gt, pixel, iteration, parameters: loss.terms(
        output, gt, iteration, reference=pixel, parameters=parameters, reference_name='l_pix'), steps)


def test_the_backoff_rescues_training_from_a_hostile_term(tiny_prior, basicsr_log):
    """Unguarded (max_conflict false), a hostile term that joins at 40% undoes what L1 learned; the back-off turns it
    off and L1 comes back to where L1 alone gets."""
    prior = hostile_prior(tiny_prior)
    plain = DiffLoss(prior=prior, max_conflict=False, backoff_margin=False, seed=0)
    plain.set_training_length(600)
    watched = DiffLoss(prior=prior, max_conflict=False, seed=0)
    watched.set_training_length(600)
    alone = DiffLoss(prior=prior, loss_weight=0, seed=0)
    unwatched, rescued, l1 = (sum(train_conv(loss)[-10:]) / 10 for loss in (plain, watched, alone))
    print(f'L1 after 600 steps: L1 alone {l1:.4f}, hostile term {unwatched:.4f}, with the back-off {rescued:.4f}')
    assert unwatched > 3 * l1
    assert watched.backoff.steps == 2 and rescued < 1.5 * l1


class DeadRedToy(nn.Module):
    """Brightens a dark image by a shared ``gain``; red passes a threshold, ``relu(gain * red - 3 * q)``, so it is dead
    (0, no gradient) at the start, and the pixel loss revives it by raising ``gain`` until red crosses the threshold,
    then lowering ``q``. ``q`` also adds a faint copy of red's texture (zero mean per image) to green: the one path by
    which anything reaches ``q`` while red is dead, and not the pixel loss (green is below the GT everywhere then, so
    L1's gradient through a zero-mean texture cancels)."""

    def __init__(self):
        super().__init__()
        self.gain, self.q = nn.Parameter(torch.tensor(1.0)), nn.Parameter(torch.tensor(0.1))

    def forward(self, lq):
        red, green, blue = lq.unbind(1)
        texture = red - red.mean((-2, -1), keepdim=True)
        return torch.stack([F.relu(self.gain * red - 3 * self.q), self.gain * green + 0.1 * self.q * texture,
                            self.gain * blue], 1)


def red_reading_prior(prior):
    """``prior`` whose noise prediction reads red into green (``eps_G = x_G + 2 x_R``), as a UNet mixes channels:
    while red is dead, the score difference calls green wrong in the pattern of red's texture, and pulls ``q`` up."""
    mix = torch.eye(3)
    mix[1, 0] = 2.0
    prior.forward = lambda x, t, features_only=False: (torch.einsum('ij,bjhw->bihw', mix, x), x)
    return prior


def red_after_training(loss, steps=150, seed=0):
    """The mean red of the toy's outputs after ``steps`` Adam steps (lr 1e-2) of L1 plus ``loss`` (None: L1 alone),
    on smooth random photos in [0.2, 1] darkened 4x; the ground truth's red is about 0.6."""
    torch.manual_seed(seed)
    net = DeadRedToy()
    parameters = list(net.parameters())
    optimizer = torch.optim.Adam(parameters, lr=1e-2)
    generator = torch.Generator().manual_seed(seed + 1)
    for iteration in range(1, steps + 1):
        coarse = torch.rand(4, 3, 4, 4, generator=generator)
        gt = 0.2 + 0.8 * F.interpolate(coarse, size=16, mode='bicubic', align_corners=False).clamp(0, 1)
        output = net(gt / 4)
        pixel = F.l1_loss(output, gt)
        terms = {'l_pix': pixel} if loss is None else loss.terms(output, gt, iteration, reference=pixel,
                                                                  parameters=parameters, reference_name='l_pix')
        optimizer.zero_grad()
        sum(terms.values()).backward()
        optimizer.step()
    return output[:, 0].mean().item()


@pytest.mark.parametrize('seed', [0, 1])
def test_a_dead_channel_that_l1_revives_revives_under_the_default(tiny_prior, seed):
    """The low-light collapse in small (docs/study.md, "When the red channel dies"): with the term on from the first
    step (the 2026-12-04 rules: start_iter 0, no back-off; guarded), it raises ``q`` while red is dead, since the pixel
    loss does not reach ``q`` then and the guard holds only weights the pixel loss pulls, and red stays dead. L1 alone
    revives red by iteration 40; the default joins at 60 (40% of 150) and red stays revived."""
    prior = red_reading_prior(tiny_prior)
    at_once = DiffLoss(prior=prior, start_iter=0, backoff_margin=False, seed=0)
    default = DiffLoss(prior=prior, seed=0)
    for loss in (at_once, default):
        loss.set_training_length(150)
    alone, dead, revived = (red_after_training(loss, seed=seed) for loss in (None, at_once, default))
    print(f'seed {seed}, mean red after 150 steps (GT about 0.6): L1 alone {alone:.3f}, the term from the first step '
          f'{dead:.3f}, the default {revived:.3f}')
    assert alone > 0.5 and dead < 0.05
    assert revived > 0.5


def test_a_run_under_auto_start_and_backoff_resumes_exactly(tiny_prior):
    """Stopped at iteration 5 of 10 (after the join at 4, the strength still measuring) and resumed from the
    training state into a fresh loss, the terms and weights equal an uninterrupted run's."""

    def fresh_loss():
        loss = DiffLoss(prior=tiny_prior, strength_iters=3, seed=0)
        loss.set_training_length(10)
        return loss

    def steps(loss, net, optimizer, iterations):
        generator = torch.Generator().manual_seed(100)
        values = []
        for iteration in range(1, iterations.stop):
            lq = torch.rand(2, 3, 16, 16, generator=generator)
            if iteration not in iterations:
                continue
            output = net(lq)
            terms = loss.terms(output, (lq * 1.2).clamp(0, 1), iteration, reference=F.l1_loss(output, lq * 1.2),
                               parameters=list(net.parameters()), reference_name='l_pix')
            optimizer.zero_grad()
            sum(terms.values()).backward()
            optimizer.step()
            values.append({name: value.item() for name, value in terms.items()})
        return values

    torch.manual_seed(0)
    net = nn.Conv2d(3, 3, 3, padding=1)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    straight_net = copy.deepcopy(net)
    straight_optimizer = torch.optim.Adam(straight_net.parameters(), lr=1e-2)
    straight = steps(fresh_loss(), straight_net, straight_optimizer, range(1, 11))
    first = fresh_loss()
    steps(first, net, optimizer, range(1, 6))
    resumed_loss = fresh_loss()
    resumed_loss.load_training_state(copy.deepcopy(first.training_state()))
    resumed = steps(resumed_loss, net, optimizer, range(6, 11))
    assert resumed == straight[5:] and 'l_diff_eps' in resumed[0]
    for mine, theirs in zip(net.parameters(), straight_net.parameters()):
        assert torch.equal(mine, theirs)
