"""DiffLoss's speed options change nothing but rounding; its study options compute what their docstrings say."""
import pytest
import torch
from torch.autograd.graph import saved_tensors_hooks

from basicsr_diffloss.losses import DiffLoss
from basicsr_diffloss.priors import DiffusionPrior
from basicsr_diffloss.priors import diffusion_prior_arch
from basicsr_diffloss.priors.diffusion_prior_arch import native_bf16
from basicsr_diffloss.losses.application_schedule import ApplicationSchedule
from basicsr_diffloss.models.diffloss_model import PixelAndDiffusionLoss
from conftest import BACKPROP, TINY_UNET


def fresh_prior(reference, **execution):
    """A copy of ``reference`` that runs as ``execution`` says (dtype, channels_last, ...)."""
    prior = DiffusionPrior(unet=dict(TINY_UNET), **execution)
    prior.load_state_dict(reference.state_dict())
    return prior


def value_and_gradient(loss, pred, target):
    pred = pred.detach().requires_grad_(True)
    value = loss(pred, target)
    gradient, = torch.autograd.grad(value, pred)
    return value.detach(), gradient


def saved_bytes(function):
    """Bytes of the tensors autograd saves for the backward pass while ``function`` runs."""
    total = []

    def pack(tensor):
        total.append(tensor.numel() * tensor.element_size())
        return tensor

    with saved_tensors_hooks(pack, lambda tensor: tensor):
        function()
    return sum(total)


def record_prior_calls(prior, monkeypatch):
    """A list that receives ``(x_t, t, eps)`` for every call of ``prior``."""
    calls = []
    original_forward = prior.forward

    def recording_forward(x_t, t, **kwargs):
        eps, h = original_forward(x_t, t, **kwargs)
        calls.append((x_t, t, eps))
        return eps, h

    monkeypatch.setattr(prior, 'forward', recording_forward)
    return calls


@pytest.fixture
def images():
    torch.manual_seed(3)
    gt = torch.rand(2, 3, 16, 16)
    return (gt + 0.1 * torch.randn_like(gt)).clamp(0, 1), gt


@pytest.mark.parametrize('options', [dict(channels_last=True), dict(gradient_checkpointing=True)],
                         ids=['channels_last', 'gradient_checkpointing'])
def test_memory_options_keep_the_loss_and_gradient(tiny_prior, images, options):
    reference = value_and_gradient(DiffLoss(prior=fresh_prior(tiny_prior), **BACKPROP, h_weight=1.0, seed=0), *images)
    loss = DiffLoss(prior=fresh_prior(tiny_prior, **options), **BACKPROP, h_weight=1.0, seed=0)
    result = value_and_gradient(loss, *images)
    torch.testing.assert_close(result, reference, rtol=1e-4, atol=1e-7)


def test_gradient_checkpointing_stores_fewer_activations(tiny_prior, images):
    pred, gt = images
    pred = pred.requires_grad_(True)
    stored = {flag: saved_bytes(lambda: DiffLoss(prior=fresh_prior(tiny_prior, gradient_checkpointing=flag),
                                                 **BACKPROP, seed=0)(pred, gt))
              for flag in (False, True)}
    print(f'\nactivations stored: {stored[False]} bytes, with gradient checkpointing {stored[True]}')
    assert stored[True] < 0.5 * stored[False]


def test_the_target_branch_stores_no_activations(tiny_prior, images):
    """The whole loss stores what one prior pass on the restored image stores, plus a few image-sized tensors of the
    distance; a target branch with a graph would double it."""
    pred, gt = images
    pred = pred.requires_grad_(True)
    loss = DiffLoss(prior=tiny_prior, **BACKPROP, h_weight=1.0, t_range=[500, 500], seed=0)
    whole = saved_bytes(lambda: loss(pred, gt))
    t = torch.full((len(pred), ), 500)
    y_t = tiny_prior.add_noise(pred * 2 - 1, torch.randn_like(pred), t)
    one_branch = saved_bytes(lambda: tiny_prior(y_t, t))
    print(f'\nactivations stored: whole loss {whole} bytes, one prior pass {one_branch}')
    assert one_branch <= whole < 1.1 * one_branch


def test_encoder_only_path_skips_the_decoder_and_keeps_the_h_term(tiny_prior, images):
    decoder_calls = []
    tiny_prior.unet.up_blocks[0].register_forward_hook(lambda *args: decoder_calls.append(1))
    full = DiffLoss(prior=tiny_prior, **BACKPROP, eps_weight=1.0, h_weight=1.0, seed=0).terms(*images)['l_diff_h']
    assert len(decoder_calls) == 2
    encoder_only = DiffLoss(prior=tiny_prior, **BACKPROP, eps_weight=0.0, h_weight=1.0, seed=0).terms(*images)
    assert len(decoder_calls) == 2 and list(encoder_only) == ['l_diff_h']
    torch.testing.assert_close(encoder_only['l_diff_h'], full)


@pytest.mark.parametrize('dtype', ['bf16', 'fp16'])
def test_low_precision_prior_matches_fp32_gradient_and_value(tiny_prior, dtype):
    """Within 1% and cosine 0.99 on 8 images of 32x32. The error is rounding noise that averages out over elements:
    on 2 images of 16x16 bf16 is off by 1.3% (gradient cosine 0.998); fp16 by 0.08%."""
    torch.manual_seed(5)
    pred, target = torch.rand(8, 3, 32, 32), torch.rand(8, 3, 32, 32)
    results = {}
    for name in ('fp32', dtype):
        loss = DiffLoss(prior=fresh_prior(tiny_prior, dtype=name), **BACKPROP, h_weight=1.0, seed=0)
        try:
            results[name] = value_and_gradient(loss, pred, target)
        except RuntimeError as error:  # a kernel this CPU build lacks for the dtype
            pytest.skip(f'{dtype} is not supported on this CPU: {error}')
    cosine = torch.nn.functional.cosine_similarity(results['fp32'][1].flatten(), results[dtype][1].flatten(), dim=0)
    relative = ((results[dtype][0] - results['fp32'][0]) / results['fp32'][0]).abs()
    print(f'\n{dtype}: gradient cosine similarity with fp32 {cosine:.5f}, loss relative difference {relative:.2e}')
    assert cosine >= 0.99 and relative <= 0.01


def test_compiled_prior_gives_the_eager_loss_and_gradient(tiny_prior, images):
    """torch.compile (inductor; about 40 s of compilation on a 2-core CPU)."""
    eager = value_and_gradient(DiffLoss(prior=fresh_prior(tiny_prior), **BACKPROP, h_weight=1.0, seed=0), *images)
    loss = DiffLoss(prior=fresh_prior(tiny_prior, compile=True), **BACKPROP, h_weight=1.0, seed=0)
    compiled = value_and_gradient(loss, *images)
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-7)


def test_every_k_applies_the_term_on_every_kth_call_with_k_times_the_weight(tiny_prior, images):
    reference = DiffLoss(prior=tiny_prior, eps_weight=3.5, seed=0).terms(*images)['l_diff_eps']
    every = DiffLoss(prior=tiny_prior, eps_weight=3.5, seed=0, every=3)
    assert every.terms(*images) == {} and every.terms(*images) == {}
    torch.testing.assert_close(every.terms(*images)['l_diff_eps'], 3 * reference)
    assert every.terms(*images, current_iter=7) == {}  # the model's iteration, when given, decides
    assert 'l_diff_eps' in every.terms(*images, current_iter=9)


def test_probability_keeps_the_expected_weight():
    schedule = ApplicationSchedule(probability=0.25)
    generator = torch.Generator().manual_seed(0)
    scales = torch.tensor([schedule.scale(iteration, generator) for iteration in range(1, 4001)])
    applied = scales > 0
    assert set(scales[applied].tolist()) == {4.0}
    assert abs(applied.float().mean() - 0.25) < 0.03 and abs(scales.mean() - 1) < 0.12


def test_start_iter_and_warmup_ramp_the_weight():
    schedule = ApplicationSchedule(start_iter=10, warmup_iters=4)
    scales = [schedule.scale(iteration, None) for iteration in (1, 9, 10, 11, 12, 13, 14, 100)]
    assert scales == [0, 0, 0.25, 0.5, 0.75, 1, 1, 1]


def test_model_loss_slot_passes_the_iteration_and_skips_the_term_before_start(tiny_prior, images):
    slot = PixelAndDiffusionLoss(torch.nn.L1Loss(), DiffLoss(prior=tiny_prior, eps_weight=3.5, start_iter=5))
    pred, gt = images
    slot.current_iter = 4
    slot(pred, gt)
    assert list(slot.pop_terms()[0]) == ['l_pix']
    slot.current_iter = 5
    slot(pred, gt)
    assert list(slot.pop_terms()[0]) == ['l_pix', 'l_diff_eps']
    alone = PixelAndDiffusionLoss(None, DiffLoss(prior=tiny_prior, eps_weight=3.5, start_iter=5))
    pred = pred.clone().requires_grad_(True)
    alone.current_iter = 1
    alone(pred, gt).backward()  # a skipped term alone still gives a loss that can be back-propagated
    assert pred.grad.abs().sum() == 0


def test_score_difference_gradient_is_the_weighted_prediction_difference(tiny_prior, images, monkeypatch):
    pred, gt = images
    pred = pred.clamp(0.01, 0.99)  # inside input_range: no clamped pixels without gradient
    outputs = record_prior_calls(tiny_prior, monkeypatch)
    loss = DiffLoss(prior=tiny_prior, gradient='score_difference', eps_weight=3.0, seed=0)
    value, gradient = value_and_gradient(loss, pred, gt)
    (_, _, eps), = outputs  # both branches in one batched call: restored first, then the GT
    eps_pred, eps_target = eps.chunk(2)
    assert eps.grad_fn is None  # no graph through the UNet
    difference = eps_pred - eps_target
    torch.testing.assert_close(value, difference.square().mean() * 3.0)
    # d/d pred = eps_weight * 2 (eps(y_t) - eps(x_t)) / N, times 2 for the [0, 1] -> [-1, 1] mapping
    torch.testing.assert_close(gradient, 3.0 * 2 * difference / difference.numel() * 2)
    backprop = DiffLoss(prior=tiny_prior, **BACKPROP, eps_weight=3.0, seed=0)(pred, gt)
    torch.testing.assert_close(backprop, value)  # the same draws give the same logged value


def decoder_calls_with_graph(prior):
    """A list that receives an entry whenever the UNet's first up block runs while recording a graph."""
    calls = []
    prior.unet.up_blocks[0].register_forward_hook(
        lambda module, inputs, output: calls.append(1) if torch.is_grad_enabled() else None)
    return calls


def gradients_of_terms(loss, pred, gt):
    """``{name: d term / d pred}`` for each term of ``loss``."""
    pred = pred.detach().requires_grad_(True)
    terms = loss.terms(pred, gt)
    return {name: torch.autograd.grad(value, pred, retain_graph=True)[0] for name, value in terms.items()}


def test_h_term_alone_trains_under_the_default_gradient_through_the_encoder_only(tiny_prior, images):
    pred, gt = images
    decoder = decoder_calls_with_graph(tiny_prior)
    default = gradients_of_terms(DiffLoss(prior=tiny_prior, eps_weight=0, h_weight=1.0, seed=0), pred, gt)
    assert DiffLoss(prior=tiny_prior, h_weight=1.0).gradient == 'score_difference'  # the default preset
    assert list(default) == ['l_diff_h'] and default['l_diff_h'].abs().sum() > 0 and not decoder
    backprop = gradients_of_terms(DiffLoss(prior=tiny_prior, **BACKPROP, eps_weight=0, h_weight=1.0, seed=0), pred,
                                  gt)
    torch.testing.assert_close(default['l_diff_h'], backprop['l_diff_h'])


def test_both_terms_under_the_default_gradient_score_eps_and_backpropagate_h(tiny_prior, images):
    pred, gt = images
    pred = pred.clamp(0.01, 0.99)
    decoder = decoder_calls_with_graph(tiny_prior)
    both = gradients_of_terms(DiffLoss(prior=tiny_prior, eps_weight=3.0, h_weight=0.5, seed=0), pred, gt)
    assert list(both) == ['l_diff_eps', 'l_diff_h'] and not decoder  # the h pass stops after the middle block
    eps_alone = gradients_of_terms(DiffLoss(prior=tiny_prior, eps_weight=3.0, seed=0), pred, gt)
    h_through_unet = gradients_of_terms(DiffLoss(prior=tiny_prior, **BACKPROP, eps_weight=0, h_weight=0.5, seed=0),
                                        pred, gt)
    torch.testing.assert_close(both['l_diff_eps'], eps_alone['l_diff_eps'])
    torch.testing.assert_close(both['l_diff_h'], h_through_unet['l_diff_h'])


def test_x0_space_compares_the_implied_clean_images(tiny_prior, images, monkeypatch):
    pred, gt = images
    calls = record_prior_calls(tiny_prior, monkeypatch)
    terms = DiffLoss(prior=tiny_prior, space='x0', eps_weight=1.0, seed=0).terms(pred, gt)
    (z_t, t_both, eps), = calls  # one batched call: restored first, then the GT
    (y_t, x_t), (eps_pred, eps_target), t = z_t.chunk(2), eps.chunk(2), t_both.chunk(2)[0]
    abar = tiny_prior.abar(t)
    expected = ((y_t - (1 - abar).sqrt() * eps_pred) - (x_t - (1 - abar).sqrt() * eps_target)) / abar.sqrt()
    torch.testing.assert_close(terms['l_diff_x0'], expected.square().mean())


def test_to_x0_inverts_add_noise_given_the_true_noise(tiny_prior, images):
    x0, noise, t = images[1] * 2 - 1, torch.randn(2, 3, 16, 16), torch.tensor([10, 900])
    torch.testing.assert_close(tiny_prior.to_x0(noise, tiny_prior.add_noise(x0, noise, t), t), x0, rtol=1e-4,
                               atol=1e-4)


def test_snr_weighting_has_mean_one_over_t_range_and_favours_noisy_timesteps(tiny_prior):
    loss = DiffLoss(prior=tiny_prior, t_weighting='snr', t_range=[100, 900])
    weights = loss._timestep_weights(torch.arange(100, 901)).flatten()
    assert abs(weights.mean() - 1) < 1e-5
    assert (weights[1:] >= weights[:-1]).all() and weights[-1] > 1 > weights[0]


def test_snr_weighting_weights_each_image_by_its_timestep(tiny_prior, images, monkeypatch):
    calls = record_prior_calls(tiny_prior, monkeypatch)
    value = DiffLoss(prior=tiny_prior, eps_weight=1.0, t_weighting='snr', t_range=[0, 999], seed=0)(*images)
    (_, t_both, eps), = calls
    (eps_pred, eps_target), t = eps.chunk(2), t_both.chunk(2)[0]
    noise_share = 1 - tiny_prior.alphas_cumprod
    weights = (noise_share[t] / noise_share.mean()).view(-1, 1, 1, 1)
    torch.testing.assert_close(value, (weights * (eps_pred - eps_target).square()).mean())


def test_shared_augmentation_moves_both_images_alike(tiny_prior):
    loss = DiffLoss(prior=tiny_prior, augment=True, seed=0)
    image = torch.rand(1, 3, 8, 8)
    changed = 0
    for _ in range(20):
        pred_side, target_side = loss._shared_flip_and_shift(image, image.clone())
        assert torch.equal(pred_side, target_side)
        assert torch.equal(pred_side.flatten().sort().values, image.flatten().sort().values)  # a permutation
        changed += not torch.equal(pred_side, image)
    assert changed >= 10


@pytest.mark.parametrize('options, message', [
    (dict(probability=0), "'probability': 0 must be > 0"),
    (dict(every=0), "'every': 0 must be >= 1"),
    (dict(space='v'), "'space': 'v' is not one of"),
    (dict(gradient='sds'), "'gradient': 'sds' is not one of"),
    (dict(t_weighting='min_snr'), "'t_weighting': 'min_snr' is not one of"),
])
def test_bad_schedule_and_mode_options_name_the_option(tiny_prior, options, message):
    with pytest.raises(ValueError, match=message):
        DiffLoss(prior=tiny_prior, **options)


def test_auto_dtype_follows_native_bf16_and_is_applied_at_the_first_call(images, monkeypatch):
    with open('/proc/cpuinfo') as f:
        flags = set(f.read().split())
    native = bool(flags & {'avx512_bf16', 'amx_bf16'})
    assert native_bf16(torch.device('cpu')) == native
    monkeypatch.setattr(diffusion_prior_arch, 'native_bf16', native_bf16)  # undo conftest's fp32 for this test
    prior = DiffusionPrior(unet=dict(TINY_UNET))  # dtype: auto
    loss = DiffLoss(prior=prior, eps_weight=3.5)
    assert prior.dtype is None and next(prior.unet.parameters()).dtype == torch.float32
    loss(*images)
    assert prior.dtype == (torch.bfloat16 if native else torch.float32) == next(prior.unet.parameters()).dtype
    # channels_last auto: NHWC exactly where the prior runs in bf16 on the CPU
    expected_format = torch.channels_last if native else torch.contiguous_format
    assert prior.memory_format == expected_format
    assert prior.unet.conv_in.weight.is_contiguous(memory_format=expected_format)
    prior.set_execution(dtype='fp32')
    loss(*images)
    assert next(prior.unet.parameters()).dtype == torch.float32 == prior.dtype
    assert prior.memory_format == torch.contiguous_format


@pytest.mark.parametrize('capability, expected', [((7, 0), torch.float32), ((7, 5), torch.float32),
                                                  ((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16)])
def test_auto_dtype_on_cuda_is_bf16_only_from_compute_capability_8(monkeypatch, capability, expected):
    """Before Ampere (V100 7.0, T4 7.5) torch.cuda.is_bf16_supported() says yes for emulated bf16, which is slow."""
    monkeypatch.setattr(diffusion_prior_arch, 'native_bf16', native_bf16)  # undo conftest's choice for this test
    monkeypatch.setattr(torch.cuda, 'is_bf16_supported', lambda *args, **kwargs: True)
    monkeypatch.setattr(torch.cuda, 'get_device_capability', lambda device=None: capability)
    assert diffusion_prior_arch.resolve_dtype('auto', torch.device('cuda')) == expected
    assert diffusion_prior_arch.resolve_dtype('fp32', torch.device('cuda')) == torch.float32


@pytest.mark.parametrize('options, message', [
    (dict(dtype='bf16'), r"DiffLoss options \['dtype'\] choose how the prior runs .*prior: \{type: DiffusionPrior, "
     r"pretrained: \.\.\., dtype: bf16\}"),
    (dict(compile=True, channels_last=True), r"\['channels_last', 'compile'\] choose how the prior runs"),
    (dict(eps_wieght=1.0), r"DiffLoss has no option\(s\) \['eps_wieght'\]"),
    # a removed option gets what replaced it, not the closest name ('every', which would change the schedule)
    (dict(guard_every=10), r"DiffLoss options \['guard_every'\] were removed: .*runs on every step \(max_conflict"),
])
def test_options_diffloss_does_not_take_are_refused_with_where_they_go(tiny_prior, options, message):
    with pytest.raises(ValueError, match=message):
        DiffLoss(prior=tiny_prior, **options)


@pytest.mark.parametrize('options, message', [
    (dict(compile='yes'), "DiffusionPrior option 'compile': 'yes' is not true or false"),
    (dict(dtype='fp8'), "DiffusionPrior option 'dtype': 'fp8' is not one of"),
])
def test_bad_execution_options_of_the_prior_name_the_option(options, message):
    with pytest.raises(ValueError, match=message):
        DiffusionPrior(unet=dict(TINY_UNET), **options)
