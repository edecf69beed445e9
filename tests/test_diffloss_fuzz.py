"""Random shapes, ranges, dtypes and option combinations: DiffLoss gives a finite loss or a documented error."""
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from basicsr_diffloss.priors import DiffusionPrior
from basicsr_diffloss.losses import DiffLoss
from conftest import TINY_UNET

torch.manual_seed(0)
PRIOR = DiffusionPrior(unet=dict(TINY_UNET))
DOCUMENTED = (ValueError, FloatingPointError)


@st.composite
def cases(draw):
    channels = draw(st.sampled_from([1, 3, 4]))
    shape = (draw(st.integers(1, 2)), channels, draw(st.integers(1, 20)), draw(st.integers(1, 20)))
    low = draw(st.sampled_from([0.0, -1.0, 0.0]))
    high = draw(st.sampled_from([1.0, 255.0]))
    options = dict(
        eps_weight=draw(st.sampled_from([0.0, 1e-3, 1.0, 5.0])),
        h_weight=draw(st.sampled_from([0.0, 1e-6, 1.0])),
        t_range=sorted(draw(st.lists(st.integers(0, 999), min_size=2, max_size=2))),
        num_samples=draw(st.integers(1, 2)),
        crop_size=draw(st.sampled_from([None, 2, 4, 8, 32])),
        input_range=[low, high],
        out_of_range=draw(st.sampled_from(['clamp', 'error'])),
        seed=draw(st.integers(0, 2**31)),
        gradient=draw(st.sampled_from(['backprop', 'score_difference'])),
    )
    scale = draw(st.sampled_from([1.0, 1.5]))  # 1.5: some values leave the range
    pred_dtype = draw(st.sampled_from([torch.float32, torch.float64, torch.bfloat16]))
    special = draw(st.sampled_from([None, None, 'nan', 'inf']))
    prior_dtype = draw(st.sampled_from(['fp32', 'bf16']))
    return shape, options, scale, pred_dtype, special, prior_dtype


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_diffloss_never_crashes_outside_documented_errors(case):
    shape, options, scale, pred_dtype, special, prior_dtype = case
    PRIOR.set_execution(dtype=prior_dtype)
    low, high = options['input_range']
    pred = (torch.rand(shape) * (high - low) * scale + low).to(pred_dtype).requires_grad_(True)
    target = torch.rand(shape) * (high - low) + low
    if special:
        target[(0, ) * len(shape)] = float(special)
    try:
        value = DiffLoss(prior=PRIOR, **options)(pred, target)
        value.backward()
    except DOCUMENTED as error:
        message = str(error)
        assert 'DiffLoss' in message or 'prior' in message, message
        return
    assert value.dtype == torch.float32 and torch.isfinite(value)
    assert pred.grad is not None and torch.isfinite(pred.grad).all()
    assert special is None and (shape[1] in (1, 3))


def test_generator_state_round_trip_repeats_the_draws():
    pred, target = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)
    loss = DiffLoss(prior=PRIOR, eps_weight=3.5, seed=1)
    loss(pred, target)
    state = loss.rng_state()
    first = loss(pred, target)
    loss.set_rng_state(state)
    torch.testing.assert_close(loss(pred, target), first, rtol=0, atol=0)
