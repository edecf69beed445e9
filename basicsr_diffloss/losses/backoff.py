"""Backs the diffusion term off when, after it joined, the pixel loss rises: the outcome the term must not cost."""
import torch.distributed as dist
from basicsr.utils import get_root_logger

SMOOTHING = 0.98  # the pixel loss's exponential moving average: about 50 iterations


class Backoff:
    """Watches the pixel loss once the diffusion term has joined and halves, then removes, the term if it rises.

    The pixel loss is smoothed over about 50 iterations (an exponential moving average, averaged over DDP ranks, so
    every rank decides alike) from the first training step on; its value when the term joins is the reference. After
    that, each run of ``patience`` consecutive iterations with the smoothed pixel loss above ``(1 + margin)`` times
    the reference halves the term's weight (the first time) or turns the term off for the rest of the run (the
    second), with a warning naming the options. Guarantee: the term never runs through more than ``2 * patience``
    consecutive iterations with the smoothed pixel loss more than ``margin`` above its value at joining.

    Args:
        margin (float): the rise of the smoothed pixel loss over its value at joining, as a share of it, that counts.
        patience (int): consecutive iterations above that rise before the term backs off a step.
    """

    def __init__(self, margin, patience):
        self.margin, self.patience = margin, patience
        self.smoothed = None  # the pixel loss's moving average
        self.at_join = None  # its value when the term joined
        self.above = 0  # consecutive iterations above the line
        self.steps = 0  # 0: full weight, 1: halved, 2: off

    @property
    def factor(self):
        """The factor on the term's weight: 1, 0.5 or 0 (off)."""
        return (1.0, 0.5, 0.0)[self.steps]

    def observe(self, pixel_loss, joined, current_iter):
        """Takes one training step's pixel loss (a scalar tensor; every DDP rank calls this at the same steps) and
        whether the term applies from this step on; returns the factor on the term's weight for this step."""
        value = pixel_loss.detach().float().reshape(1)
        if dist.is_available() and dist.is_initialized():
            value = value.clone()
            dist.all_reduce(value)
            value /= dist.get_world_size()
        value = value.item()
        self.smoothed = value if self.smoothed is None else SMOOTHING * self.smoothed + (1 - SMOOTHING) * value
        if not joined or self.steps == 2:
            return self.factor
        if self.at_join is None:
            self.at_join = self.smoothed
        self.above = self.above + 1 if self.smoothed > (1 + self.margin) * self.at_join else 0
        if self.above >= self.patience:
            self.steps, self.above = self.steps + 1, 0
            action = 'halves the diffusion terms\' weight' if self.steps == 1 else 'turns the diffusion terms off'
            get_root_logger().warning(
                f'DiffLoss back-off, iteration {current_iter}: the smoothed pixel loss ({self.smoothed:.4g}) has been '
                f'over {1 + self.margin:g} x its value when the term joined ({self.at_join:.4g}) for {self.patience} '
                f'iterations, so it {action} for the rest of the run. The term fights the pixel loss here: lower '
                "'strength', start it later ('start_iter'), or remove train.diffusion_opt; 'backoff_margin' and "
                "'backoff_patience' set this rule ('backoff_margin: false' turns it off).")
        return self.factor

    def state_dict(self):
        return dict(smoothed=self.smoothed, at_join=self.at_join, above=self.above, steps=self.steps)

    def load_state_dict(self, state):
        self.smoothed, self.at_join = state['smoothed'], state['at_join']
        self.above, self.steps = state['above'], state['steps']
