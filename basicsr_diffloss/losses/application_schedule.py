"""When the diffusion term is applied, and how its weight is rescaled so that its expected pull stays the same."""
import torch

from ..options import number, option_error


class ApplicationSchedule:
    """Turns the diffusion term on at ``start_iter``, ramps it up, and applies it on a subset of iterations.

    Args:
        start_iter (int): iterations before this one skip the term (and its cost). Default: 0.
        warmup_iters (int): after ``start_iter`` the weight rises linearly from 1/warmup_iters to 1 over this many
            iterations. Default: 0 (full weight at once).
        every (int): apply the term on every k-th iteration only, with its weight multiplied by k. Default: 1.
        probability (float): apply the term with this probability (drawn from the loss's generator, so resumes
            repeat the draws), with its weight divided by it. Default: 1.0.

    ``every`` and ``probability`` divide the cost of the term by about k (or 1/p) while keeping its expected
    gradient; the gradient of a single step is k (or 1/p) times larger, which a large k can make noisy.
    """

    def __init__(self, start_iter=0, warmup_iters=0, every=1, probability=1.0):
        self.start_iter = number('DiffLoss', 'start_iter', start_iter, minimum=0, integer=True)
        self.warmup_iters = number('DiffLoss', 'warmup_iters', warmup_iters, minimum=0, integer=True)
        self.every = number('DiffLoss', 'every', every, minimum=1, integer=True)
        self.probability = number('DiffLoss', 'probability', probability, maximum=1.0)
        if self.probability <= 0:
            raise option_error('DiffLoss', 'probability', probability, 'must be > 0 (remove the DiffLoss entry to '
                               'turn the term off).')

    def scale(self, iteration, generator):
        """The factor on the term's weight at ``iteration`` (1-based); 0 means: skip the term this time."""
        if iteration < self.start_iter or iteration % self.every:
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
