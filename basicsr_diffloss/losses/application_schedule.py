"""When the diffusion term is applied, and how its weight is rescaled so that its expected pull stays the same."""
import torch
from basicsr.utils import get_root_logger

from ..options import number, option_error

# start_iter 'auto': the share of the run the pixel loss trains alone before the term joins. Chosen on the low-light
# sweep (scripts/low_light_sweep.py, docs/study.md): a term that acts from the first step kept a colour channel IAT
# had to revive dead, whatever bounded its step; L1 revives it within the first 35% of a 400-iteration run.
AUTO_START_SHARE = 0.4


class ApplicationSchedule:
    """Turns the diffusion term on at ``start_iter``, ramps it up, and applies it on a subset of iterations.

    Args:
        start_iter (int | str): iterations before this one skip the term (and its cost): the pixel loss trains alone
            first. ``auto``: 40% of the run (``train.total_iter``, which the model passes), so that the pixel loss
            does its coarse work before the term joins; without a known run length (DiffLoss called outside a
            model) the term joins at once, with a warning. The log says when the term joins. Default: the preset's
            (``auto``; ``paper``: 0).
        warmup_iters (int): after ``start_iter`` the weight rises linearly from 1/warmup_iters to 1 over this many
            iterations. Default: 0 (full weight at once).
        every (int): apply the term on every k-th iteration only (k times cheaper), with its weight multiplied by k.
            Default: 1.
        probability (float): apply the term on a random share of iterations (cheaper), with its weight divided by
            that share; drawn from the loss's generator, so resumes repeat the draws. Default: 1.0.

    ``every`` and ``probability`` divide the cost of the term by about k (or 1/p) while keeping its expected
    gradient; the gradient of a single step is k (or 1/p) times larger, which a large k can make noisy.
    """

    def __init__(self, start_iter=0, warmup_iters=0, every=1, probability=1.0):
        self.auto = start_iter == 'auto'
        if isinstance(start_iter, str) and not self.auto:
            raise option_error('DiffLoss', 'start_iter', start_iter,
                               "must be an iteration (an integer >= 0) or 'auto'.")
        self.start_iter = 0 if self.auto else number('DiffLoss', 'start_iter', start_iter, minimum=0, integer=True)
        self.total_iter = None
        self.joined = False
        self.warmup_iters = number('DiffLoss', 'warmup_iters', warmup_iters, minimum=0, integer=True)
        self.every = number('DiffLoss', 'every', every, minimum=1, integer=True)
        self.probability = number('DiffLoss', 'probability', probability, maximum=1.0)
        if self.probability <= 0:
            raise option_error('DiffLoss', 'probability', probability, 'must be > 0 (remove the DiffLoss entry to '
                               'turn the term off).')

    def set_training_length(self, total_iter):
        """The run's length, which ``start_iter: auto`` needs; called by the model with ``train.total_iter``."""
        self.total_iter = number('train', 'total_iter', total_iter, minimum=1, integer=True)
        if self.auto:
            self.start_iter = round(AUTO_START_SHARE * self.total_iter)

    def describe(self):
        """Where the start comes from, in words, for the log."""
        if not self.auto:
            return f'start_iter {self.start_iter}'
        if self.total_iter is None:
            return 'start_iter auto, the run length unknown'
        return f'start_iter auto: {AUTO_START_SHARE:.0%} of total_iter {self.total_iter}'

    def scale(self, iteration, generator):
        """The factor on the term's weight at ``iteration`` (1-based); 0 means: skip the term this time."""
        if iteration < self.start_iter:
            return 0.0
        if not self.joined:
            self.joined = True
            logger = get_root_logger()
            if self.auto and self.total_iter is None:
                logger.warning(f"DiffLoss option 'start_iter': auto joins the term after {AUTO_START_SHARE:.0%} of the "
                               "run, but the run's length is unknown (DiffLoss is called outside a BasicSR model), so "
                               'it joins at once; call set_training_length(total_iter) first, or give start_iter.')
            joined = max(self.start_iter, 1)  # iterations count from 1
            if iteration > joined:  # a resumed run: the term joined before the stop
                logger.info(f'DiffLoss is on since iteration {joined} ({self.describe()}); '
                            f'training goes on at iteration {iteration}.')
            else:
                logger.info(f'DiffLoss joins the training at iteration {iteration} ({self.describe()}).')
        if iteration % self.every:
            return 0.0
        factor = float(self.every)
        if self.probability < 1:
            draw = torch.rand((), generator=generator, device=generator.device).item()
            if draw >= self.probability:
                return 0.0
            factor /= self.probability
        if self.warmup_iters:
            factor *= min(1.0, (iteration - self.start_iter + 1) / self.warmup_iters)
        return factor
