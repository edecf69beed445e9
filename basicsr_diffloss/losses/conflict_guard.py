"""Whether DiffLoss pulls the restorer's weights against the pixel loss: measured, logged, capped and warned about."""
import math

import torch
import torch.distributed as dist
from basicsr.utils import get_root_logger

from ..priors.compiled_graphs import donated_buffers_off

CHECKS_KEPT = 5  # the cap follows the worst of the last this many checks
WARN_AFTER = 3  # consecutive checks above max_conflict before the guard warns
WARN_EVERY = 10  # while it lasts, the warning repeats every WARN_AFTER * WARN_EVERY checks


class ConflictGuard:
    """Measures, on the restorer's weights, how much of the pixel loss's descent each diffusion term cancels.

    With ``g_pix`` the gradient of the pixel loss and ``g_term`` the gradient of a diffusion term (at its applied
    weight), both on the restorer's trainable parameters, the term's **conflict** is ``-<g_pix, g_term> /
    ||g_pix||^2``: the share of the pixel loss's own first-order descent that the term takes back in a gradient step
    (0: none, or the term helps; 1: the pixel loss stops falling). Its **cosine** is the cosine of the two gradients.
    They are measured on the image the step restores, on the parameters, because that is where the two losses meet:
    on the low-light task the term's gradient on the image was nearly orthogonal to L1's (cosine +0.1) while on IAT's
    weights it pointed against it (cosine -0.9), pushing the output's blue channel into IAT's clamp, where no gradient
    comes back (docs/study.md).

    The guard measures every ``every``-th iteration (and whenever relative strength asks), logs ``conflict_<term>``
    and ``cos_<term>`` into the training log, keeps the last ``CHECKS_KEPT`` checks (all DDP ranks together), and

    - caps relative weights: ``cap(name)`` is the weight at which the term's conflict equals ``max_conflict`` on the
      worst of the kept checks (infinite while the term helps on all of them);
    - warns, naming the options to change, when a term's conflict at its applied weight stays above
      ``max_conflict`` for ``WARN_AFTER`` checks running (absolute weights are never changed, only warned about).

    Args:
        max_conflict (float): the largest share of the pixel loss's descent a diffusion term may cancel, in [0, 1).
        every (int): iterations between checks.
        names (list[str]): the logged names of the diffusion terms (``l_diff_eps``, ``l_diff_h``).
    """

    def __init__(self, max_conflict, every, names):
        self.max_conflict = max_conflict
        self.every = every
        self.recent = {name: [] for name in names}  # per term, -<g_pix, g_term> / ||g_pix||^2 at weight 1, newest last
        self.checks = 0
        self.above = dict.fromkeys(names, 0)  # consecutive checks above max_conflict
        self.last = {}  # the last check's logged values: conflict_<term>, cos_<term>
        self._check = {}  # the last check's (opposing share at weight 1, cosine) per term
        self._capped_logged = {}  # term -> the capped weight last logged

    def due(self, current_iter):
        return current_iter is not None and current_iter % self.every == 0

    def measure(self, reference, distances, parameters):
        """One check: ``reference`` (the pixel loss) and each unweighted term of ``distances`` differentiated on
        ``parameters``. Every DDP rank must call it at the same iterations (the sums are all-reduced); a rank whose
        term the schedule skipped calls it with ``reference=None``."""
        self._check = {}
        names = list(self.recent)
        values = [0.0] * (1 + 2 * len(names))  # a rank whose term was skipped this time contributes nothing
        if reference is not None:
            pixel = _gradient(reference, parameters)
            values[0] = pixel.square().sum().item()
            for index, name in enumerate(names):
                if name in distances:
                    term = _gradient(distances[name], parameters)
                    values[1 + 2 * index:3 + 2 * index] = [-(pixel * term).sum().item(), term.square().sum().item()]
        totals = torch.tensor(values, dtype=torch.float64)
        if dist.is_available() and dist.is_initialized():
            totals = totals.to(parameters[0].device)
            dist.all_reduce(totals)
        pixel_sq, *pairs = totals.tolist()
        if not pixel_sq:  # every rank skipped the term, or the pixel loss is flat
            return
        self.checks += 1
        for name, opposing, term_sq in zip(names, pairs[0::2], pairs[1::2]):
            if term_sq:
                self.recent[name] = (self.recent[name] + [opposing / pixel_sq])[-CHECKS_KEPT:]
                self._check[name] = (opposing / pixel_sq, -opposing / math.sqrt(pixel_sq * term_sq))

    def report(self, weights, uncapped, current_iter):
        """After a check: log the conflict at the applied ``weights`` (each term's factor on its unweighted distance)
        and the cosine; warn when a term stays above ``max_conflict``; say when the cap lowers a relative weight below
        ``uncapped`` (the strength rule's weight, same factors)."""
        for name, (opposing, cosine) in self._check.items():
            conflict = weights[name] * opposing
            self.last[f'conflict_{name[2:]}'] = conflict
            self.last[f'cos_{name[2:]}'] = cosine
            self._watch(name, conflict, cosine, weights[name], current_iter)
            capped = name in uncapped and weights[name] < 0.999 * uncapped[name]
            previous = self._capped_logged.get(name)
            if capped and (previous is None or abs(weights[name] - previous) > 0.1 * previous):
                get_root_logger().info(
                    f'DiffLoss guard, iteration {current_iter}: {name} weight capped at {weights[name]:.4g} (the '
                    f'strength rule gives {uncapped[name]:.4g}) so that it cancels at most {self.max_conflict:g} of '
                    "the pixel loss's descent on the restorer's weights (option max_conflict).")
                self._capped_logged[name] = weights[name]
            elif not capped and previous is not None:
                get_root_logger().info(f'DiffLoss guard, iteration {current_iter}: {name} no longer capped, weight '
                                       f'{weights[name]:.4g} (the strength rule).')
                self._capped_logged.pop(name)

    def cap(self, name):
        """The largest factor on term ``name`` whose conflict stays within ``max_conflict`` on each of the last
        ``CHECKS_KEPT`` checks (the worst one decides: one strong pull against the pixel loss can do lasting harm)."""
        worst = max(self.recent.get(name) or [0.0])
        return self.max_conflict / worst if worst > 0 else math.inf

    def _watch(self, name, conflict, cosine, weight, current_iter):
        self.above[name] = self.above.get(name, 0) + 1 if conflict > self.max_conflict else 0
        if self.above[name] % (WARN_AFTER * WARN_EVERY) != WARN_AFTER:  # after 3 checks, then every 30 while it lasts
            return
        get_root_logger().warning(
            f'DiffLoss guard, iteration {current_iter}: {name} pulls the restorer against the pixel loss on '
            f'{WARN_AFTER} checks running (now: cosine {cosine:+.2f} on its weights, it cancels {conflict:.0%} of the '
            f"pixel loss's descent at weight {weight:.4g}; option max_conflict is {self.max_conflict:g}). The "
            'restorer learns its task more slowly than without DiffLoss, or not at all. Lower the term: '
            "'strength' (relative weights, which max_conflict caps) or 'eps_weight'/'h_weight' (absolute weights, "
            "which it only warns about); a later 'start_iter' lets the pixel loss settle first.")

    def state_dict(self):
        return dict(recent={name: list(values) for name, values in self.recent.items()}, checks=self.checks,
                    above=dict(self.above), last=dict(self.last), capped_logged=dict(self._capped_logged))

    def load_state_dict(self, state):
        self.recent = {name: list(values) for name, values in state['recent'].items()}
        self.checks, self.above = state['checks'], dict(state['above'])
        self.last, self._capped_logged = dict(state['last']), dict(state['capped_logged'])


def _gradient(value, parameters):
    """The gradient of scalar ``value`` on ``parameters``, flattened (zeros where it does not depend on one)."""
    with donated_buffers_off():  # a compiled prior's graph is differentiated again by the training step
        grads = torch.autograd.grad(value, parameters, retain_graph=True, allow_unused=True)
    return torch.cat([(grad if grad is not None else torch.zeros_like(param)).flatten().float()
                      for grad, param in zip(grads, parameters)])
