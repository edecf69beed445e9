"""How strongly a loss term pulls on the restorer's output: the norm of its gradient with respect to the output."""
import torch

from ..priors.compiled_graphs import donated_buffers_off


def gradient_norms(terms, output):
    """``{name: ||d term / d output||}`` for each scalar tensor of ``terms`` (a dict), computed on ``output``."""
    with donated_buffers_off():  # a compiled prior's graph may be differentiated again
        return {name: torch.autograd.grad(value, output, retain_graph=True)[0].norm().item()
                for name, value in terms.items()}
