"""Keeps DiffLoss from moving any of the restorer's weights against the pixel loss: projected, logged and warned
about at every step."""
from collections import deque

import torch
import torch.distributed as dist
from basicsr.utils import get_root_logger

from ..priors.compiled_graphs import donated_buffers_off

BETA = 0.9  # the momenta's decay: Adam's beta1 (BasicSR's option files and torch's default)
WINDOW = 100  # steps over which the share of the terms' gradient the guard keeps is averaged for the warning
WARN_BELOW = 0.5  # the guard warns when it keeps less than this share of the terms' gradient over WINDOW steps
WARN_EVERY = 1000  # iterations between repeated warnings


class ConflictGuard:
    """Bounds, on every weight of the restorer, how far the diffusion terms may pull against the pixel loss.

    The optimizer moves a weight along its momentum, the running mean of its gradients (Adam's first moment, decay
    ``BETA``), which is the pixel loss's momentum plus the terms'. The guard keeps both momenta on the restorer's
    trainable parameters and, on each weight where the terms' momentum opposes the pixel loss's by more than
    ``max_conflict`` of it, hands the optimizer the terms' gradient that holds it at that share. So every weight
    keeps moving the way the pixel loss moves it, at least ``1 - max_conflict`` of its pull left; where the terms
    agree with the pixel loss, or where it does not reach a weight, they pass unchanged.

    Why the momentum, per weight: on the low-light task the term's gradient on IAT's weights pointed against L1's
    (cosine -0.9) where L1's pull is weak, and pushed the output's blue channel into IAT's clamp, from which no
    gradient returns (docs/study.md). Capping the term's weight so that it cancels at most 10% of the pixel loss's
    descent in norm, or its gradient per weight and per step, still let one seed of two collapse: a term that is
    free where it agrees and clipped where it opposes still accumulates in the momentum on weights where the pixel
    loss's gradient changes sign from batch to batch.

    Cost: two backward passes of the restorer per step where the term applies (the pixel loss's gradient and the
    terms'), none of the prior; with ``carry_reference`` the training step's own backward pass then reaches only the
    weights, so the guard adds one restorer backward pass to an unguarded step. Memory: the two momenta and the two
    flattened gradients, each the size of the restorer's trainable parameters; under DDP one all-reduce of both
    gradients per step.

    Each step it logs ``conflict_diff``: the share of the pixel loss's first-order descent the terms' raw gradient
    takes back, ``-<g_pix, g> / ||g_pix||^2`` (0: none, 1: the pixel loss stops falling, below 0: they help);
    ``cos_diff``: the cosine of the two gradients; ``kept_diff``: the projection of the gradient handed on onto the
    raw one, ``<g', g> / ||g||^2`` (1: unchanged; below 0: the guard takes back an earlier pull). It warns when the
    mean of ``kept_diff`` over ``WINDOW`` steps is below one half: the terms mostly fight the pixel loss. Under DDP
    the gradients are averaged over the ranks first, so every rank hands on the same projected gradient.

    Args:
        max_conflict (float): the largest share of the pixel loss's pull on any weight the terms may cancel, in
            [0, 1].
    """

    def __init__(self, max_conflict):
        self.max_conflict = max_conflict
        self.pixel_momentum = None  # flat, over the restorer's trainable parameters
        self.term_momentum = None
        self.kept = deque(maxlen=WINDOW)  # kept_diff per step, newest last
        self.last = {}  # the last step's logged values
        self.warned_at = None

    def project(self, reference, terms, parameters, current_iter, carry_reference=False):
        """``terms`` (name -> weighted diffusion term with its graph) with their gradient on ``parameters``
        projected against ``reference`` (the pixel loss). Returns the terms with their values; the first carries the
        projected gradient of them all on ``parameters`` and none reaches anything else (their graphs are
        replaced). With ``carry_reference`` it also carries the reference's own gradient, which the guard computed
        anyway: the caller then adds ``reference.detach()``, and the restorer is differentiated twice in all (the
        reference, the terms) instead of three times. Call it on the steps the terms apply; a step that skips them
        costs nothing and leaves the momenta as they are. Under DDP every rank calls it at the same steps: a rank that
        skips the terms where others apply them (``probability`` draws per rank) calls it with ``terms={}``, and
        adds zeros to the average."""
        pixel = raw = None
        if reference is not None and terms:
            pixel, raw = _gradient(reference, parameters), _gradient(sum(terms.values()), parameters)
        pixel, raw = _averaged_over_ranks(pixel, raw, parameters)
        if pixel is None or raw is None:
            return dict(terms)
        if self.pixel_momentum is None:
            self.pixel_momentum, self.term_momentum = torch.zeros_like(pixel), torch.zeros_like(pixel)
        # in place where it can be: these vectors are the size of the restorer
        self.pixel_momentum.mul_(BETA).add_(pixel, alpha=1 - BETA)
        momentum = torch.add(raw, self.term_momentum, alpha=BETA / (1 - BETA)).mul_(1 - BETA)
        # where the terms' momentum opposes the pixel loss's by more than max_conflict of it, hold it at that share
        opposed = torch.mul(momentum, self.pixel_momentum) < 0
        if self.max_conflict:
            opposed &= momentum.abs() > self.max_conflict * self.pixel_momentum.abs()
            momentum = torch.where(opposed, -self.max_conflict * self.pixel_momentum, momentum)
        else:
            momentum.masked_fill_(opposed, 0)
        projected = torch.sub(momentum, self.term_momentum, alpha=BETA).div_(1 - BETA)
        self.term_momentum = momentum
        self._log(pixel, raw, projected, current_iter)
        if not terms:
            return {}
        handed = projected.add_(pixel) if carry_reference else projected
        gradients = [part.view_as(param).to(param.dtype)
                     for param, part in zip(parameters, torch.split(handed, [p.numel() for p in parameters]))]
        first = next(iter(terms))
        return {name: term.detach() + (HandOn.apply(gradients, *parameters) if name == first else 0)
                for name, term in terms.items()}

    def _log(self, pixel, raw, projected, current_iter):
        pixel_sq, raw_sq, opposing, kept = torch.stack([
            torch.dot(pixel, pixel), torch.dot(raw, raw), -torch.dot(pixel, raw), torch.dot(projected, raw)]).tolist()
        self.kept.append(kept / raw_sq if raw_sq else 1.0)
        self.last = dict(conflict_diff=opposing / pixel_sq if pixel_sq else 0.0,
                         cos_diff=-opposing / (pixel_sq * raw_sq)**0.5 if pixel_sq and raw_sq else 0.0,
                         kept_diff=self.kept[-1])
        if len(self.kept) < WINDOW or current_iter is None:
            return
        kept = sum(self.kept) / len(self.kept)
        if kept >= WARN_BELOW or (self.warned_at is not None and current_iter - self.warned_at < WARN_EVERY):
            return
        self.warned_at = current_iter
        get_root_logger().warning(
            f'DiffLoss guard, iteration {current_iter}: over the last {WINDOW} steps it kept {kept:.0%} of the '
            "diffusion terms' gradient on the restorer's weights; the rest pulled weights against the pixel loss "
            f'(option max_conflict: {self.max_conflict:g}). The restorer still learns its task, but the term mostly '
            "fights it here and adds little: lower 'strength' (or 'eps_weight'/'h_weight'), let the pixel loss "
            "settle first with a later 'start_iter', or remove train.diffusion_opt.")

    def state_dict(self):
        return dict(pixel_momentum=self.pixel_momentum, term_momentum=self.term_momentum, kept=list(self.kept),
                    last=dict(self.last), warned_at=self.warned_at)

    def load_state_dict(self, state):
        self.pixel_momentum, self.term_momentum = state['pixel_momentum'], state['term_momentum']
        self.kept = deque(state['kept'], maxlen=WINDOW)
        self.last, self.warned_at = dict(state['last']), state['warned_at']


class HandOn(torch.autograd.Function):
    """A zero whose gradient on ``parameters`` is ``gradients`` (times the gradient it receives): hands a gradient
    computed beforehand to the training step's backward pass, which then reaches the weights without running through
    the restorer."""

    @staticmethod
    def forward(ctx, gradients, *parameters):
        ctx.gradients = gradients
        return parameters[0].new_zeros(())

    @staticmethod
    def backward(ctx, grad_output):
        return (None, *(gradient * grad_output for gradient in ctx.gradients))


def _gradient(value, parameters):
    """The gradient of scalar ``value`` on ``parameters``, flattened (zeros where it does not depend on one)."""
    with donated_buffers_off():  # a compiled prior's graph is differentiated again by the training step
        grads = torch.autograd.grad(value, parameters, retain_graph=True, allow_unused=True)
    return torch.cat([(grad if grad is not None else torch.zeros_like(param)).flatten().float()
                      for grad, param in zip(grads, parameters)])


def _averaged_over_ranks(pixel, raw, parameters):
    """``pixel`` and ``raw`` averaged over the DDP ranks (a rank without one adds zeros); unchanged without DDP.
    Each is None where no rank had it."""
    if not (dist.is_available() and dist.is_initialized()):
        return pixel, raw
    size = sum(param.numel() for param in parameters)
    stacked = torch.zeros(2, size + 1, device=parameters[0].device)
    for row, grad in enumerate((pixel, raw)):
        if grad is not None:
            stacked[row, :size], stacked[row, size] = grad, 1  # the last column counts the ranks that gave one
    dist.all_reduce(stacked)
    world = dist.get_world_size()
    return tuple(stacked[row, :size] / world if stacked[row, size] else None for row in (0, 1))
