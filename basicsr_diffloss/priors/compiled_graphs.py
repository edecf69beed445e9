"""Compiled prior graphs that can be differentiated twice, without changing torch's setting for the whole process.

DiffLoss differentiates one graph twice (``retain_graph``: relative strength and the conflict check measure a term's
gradient, then the training step uses it). A backward that torch.compile (aot_autograd) built with *donated
buffers* reuses its saved tensors' memory and refuses a second pass. torch reads
``torch._functorch.config.donated_buffer`` twice: when a graph is compiled (the prior's compiled calls run inside
``donated_buffers_off``, so their graphs donate nothing), and, as a check, when a backward runs with
``retain_graph``, in the context of the ``torch.autograd.grad`` / ``backward`` call (hooks on autograd nodes cannot
change it: the engine runs them in a copy of that context). So a caller that differentiates the prior's graph
twice runs its first, ``retain_graph`` pass inside ``donated_buffers_off`` too. Anything else compiled in the
process keeps torch's setting.
"""
import torch


def donated_buffers_off():
    """A context in which torch.compile builds backward graphs that keep their saved tensors, and in which a
    ``retain_graph`` backward of such a graph is allowed."""
    return torch._functorch.config.patch(donated_buffer=False)
