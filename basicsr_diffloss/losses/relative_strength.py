"""DiffLoss term weights given as multiples of the pixel loss's pull on the restored image, measured in training."""
import torch
import torch.distributed as dist
from basicsr.utils import get_root_logger

from ..options import choice, number, option_error
from ..priors.compiled_graphs import donated_buffers_off

UPDATES = ('fixed', 'tracked')


class RelativeStrength:
    """The weight of each diffusion term such that its gradient on the restored image is ``strength`` times the
    reference's: ``weight = strength * sum ||d reference / d output|| / sum ||d term / d output||``, the term taken at
    weight 1 and the sums running over the first ``calibration_iters`` applications of the term, all ranks together.
    Then, with ``update: fixed``, the weights stay as they are; with ``update: tracked``, every later application is
    measured too and the sums decay by ``1 - 1 / calibration_iters`` per application (a moving average over about
    ``calibration_iters`` applications), so that the weights follow the ratio as the restorer trains. Logged when
    first set, at the end of the first window, and (tracked) whenever a weight has moved by more than 10% since it was
    last logged; saved in training states.

    The reference is the model's pixel loss (``train.pixel_opt``, with its loss_weight) when the model has one, else
    L1 between output and GT.

    Args:
        strength (dict): ``{term: multiple}``, term ``eps`` (the prediction term, whatever its ``space``) or ``h``.
        calibration_iters (int): applications of the term over which the gradient norms are averaged.
        names (dict): term -> the logged name of the term (``l_diff_eps`` or ``l_diff_x0``, ``l_diff_h``).
        update (str): ``fixed`` or ``tracked`` (see above).
    """

    def __init__(self, strength, calibration_iters, names, update='fixed'):
        if not isinstance(strength, dict) or not strength or set(strength) - set(names):
            raise option_error('DiffLoss', 'strength', strength, f'must map some of {sorted(names)} to multiples of '
                               "the pixel loss's gradient, e.g. {eps: 1.0, h: 0.25}.")
        self.strength = {names[term]: number('DiffLoss', f'strength.{term}', value, minimum=0)
                         for term, value in strength.items() if value}
        if not self.strength:
            raise option_error('DiffLoss', 'strength', strength, 'sets every term to 0: give one a multiple > 0, or '
                               'remove the DiffLoss entry.')
        self.calibration_iters = number('DiffLoss', 'strength_iters', calibration_iters, minimum=1, integer=True)
        self.tracked = choice('DiffLoss', 'strength_update', update, UPDATES) == 'tracked'
        self.reference_sum = 0.0
        self.term_sums = dict.fromkeys(self.strength, 0.0)
        self.measured = 0
        self._logged = None

    @property
    def measuring(self):
        """Whether the next application is measured."""
        return self.tracked or self.measured < self.calibration_iters

    @property
    def weights(self):
        """``{logged name: weight}``; None before the first measurement."""
        if not self.measured:
            return None
        return {name: multiple * self.reference_sum / self.term_sums[name] if self.term_sums[name] else 0.0
                for name, multiple in self.strength.items()}

    def measure(self, reference, distances, output):
        """Add one application's gradient norms: ``reference`` (a scalar loss on ``output``) and each term's
        unweighted ``distances``. A rank that skipped the term this time calls it with ``reference=None`` so that
        every rank takes part in the sum; a call where all ranks skipped counts for nothing."""
        norms = [0.0] * (2 + len(self.strength))  # contributing ranks, reference, terms
        if reference is not None:
            tensors = [reference] + [distances[name] for name in self.strength]
            with donated_buffers_off():  # a compiled prior's graph is differentiated again by the training step
                norms = [1.0] + [torch.autograd.grad(value, output, retain_graph=True)[0].norm().item()
                                 for value in tensors]
        totals = torch.tensor(norms, dtype=torch.float64)
        if dist.is_available() and dist.is_initialized():
            totals = totals.to(output.device)
            dist.all_reduce(totals)
        contributors, reference_total, *term_totals = totals.tolist()
        if not contributors:  # every rank skipped the term this time
            return
        keep = 1 - 1 / self.calibration_iters if self.measured >= self.calibration_iters else 1.0
        self.reference_sum = keep * self.reference_sum + reference_total
        for name, total in zip(self.strength, term_totals):
            self.term_sums[name] = keep * self.term_sums[name] + total
        self.measured += 1
        self._log()

    def _log(self):
        weights = self.weights
        if self.measured == self.calibration_iters:  # first, so that a window of 1 says so too
            state = 'tracked from now on (moving average)' if self.tracked else 'fixed from now on'
        elif self.measured == 1:
            state = f'measured again over the next {self.calibration_iters - 1} applications'
        elif self.tracked and any(abs(weights[name] - logged) > 0.1 * logged for name, logged in self._logged.items()):
            state = 'tracked'
        else:
            return
        self._logged = weights
        shown = ', '.join(f'{name} {weight:.4g} ({self.strength[name]:g} x the reference gradient)'
                          for name, weight in weights.items())
        get_root_logger().info(f'DiffLoss strength: weights {shown} after {self.measured} measured '
                               f'application(s); {state}.')

    def state_dict(self):
        return dict(reference_sum=self.reference_sum, term_sums=dict(self.term_sums), measured=self.measured,
                    logged=self._logged)

    def load_state_dict(self, state):
        self.reference_sum, self.measured = state['reference_sum'], state['measured']
        self.term_sums = dict(state['term_sums'])
        self._logged = state.get('logged')
