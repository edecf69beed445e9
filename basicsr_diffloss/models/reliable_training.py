"""Checkpoints that survive a crash, resumes that continue exactly, and DDP on CPU-only machines."""
import os
import random
from contextlib import contextmanager

import numpy as np
import torch
import torch.distributed as dist
from basicsr.utils import get_root_logger
from torch.nn.parallel import DistributedDataParallel


@contextmanager
def atomic_torch_save():
    """Within the block, ``torch.save(obj, path)`` writes ``path.partial`` and renames it over ``path``.

    A crash while saving then leaves the previous file intact (``os.replace`` is atomic on POSIX and Windows).
    """
    original = torch.save

    def save(obj, f, *args, **kwargs):
        if not isinstance(f, (str, os.PathLike)):
            return original(obj, f, *args, **kwargs)
        partial = f'{os.fspath(f)}.partial'
        original(obj, partial, *args, **kwargs)
        os.replace(partial, f)

    torch.save = save
    try:
        yield
    finally:
        torch.save = original


def _is_distributed():
    return dist.is_available() and dist.is_initialized()


class ReliableTrainingMixin:
    """Makes a BasicSR model's checkpoints atomic, its resume exact and its DDP work on CPU (gloo).

    - ``save_network`` and ``save_training_state`` write through :func:`atomic_torch_save`.
    - Training states also hold every rank's random states (python, numpy, torch, CUDA, and the DiffLoss generator
      when the model has ``cri_diff``); ``resume_training`` restores them, each rank its own. Together with the
      resumed data position (see ``basicsr_diffloss.compat``), a run stopped at iteration N and resumed reaches the
      same weights at N+k as one that never stopped (with ``num_worker_per_gpu: 0``; BasicSR re-seeds data
      workers identically every epoch, so with workers the augmentations of the resumed epoch differ).
    - Under ``--launcher pytorch`` on a machine without CUDA, networks are wrapped in DDP without device ids.
    """

    def model_to_device(self, net):
        if self.opt['dist'] and self.device.type == 'cpu':
            return DistributedDataParallel(net.to(self.device),
                                           find_unused_parameters=self.opt.get('find_unused_parameters', False))
        return super().model_to_device(net)

    def save_network(self, *args, **kwargs):
        with atomic_torch_save():
            super().save_network(*args, **kwargs)

    def _rng_states(self):
        diffloss = getattr(self, 'cri_diff', None)
        return {
            'python': random.getstate(),
            'numpy': np.random.get_state(),
            'torch': torch.get_rng_state(),
            'cuda': torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            'diffloss': diffloss.rng_state() if diffloss is not None else None,
        }

    def save_training_state(self, epoch, current_iter):
        """BasicSR's training state (epoch, iter, optimizers, schedulers) plus each rank's random states."""
        if current_iter == -1:
            return
        rng_states = [self._rng_states()]
        if _is_distributed():
            rng_states = [None] * dist.get_world_size()
            dist.all_gather_object(rng_states, self._rng_states())
        if self.opt['rank'] != 0:
            return
        state = {
            'epoch': epoch,
            'iter': current_iter,
            'optimizers': [optimizer.state_dict() for optimizer in self.optimizers],
            'schedulers': [scheduler.state_dict() for scheduler in self.schedulers],
            'rng_states': rng_states,
        }
        with atomic_torch_save():
            torch.save(state, os.path.join(self.opt['path']['training_states'], f'{current_iter}.state'))

    def resume_training(self, resume_state):
        super().resume_training(resume_state)
        states = resume_state.get('rng_states')
        if not states:  # a state written by plain BasicSR
            return
        if len(states) != self.opt['world_size']:
            get_root_logger().warning(f"Resume: the state was saved by {len(states)} processes and this run has "
                                      f"{self.opt['world_size']}: random states are not restored, so the run goes on "
                                      'correctly but does not repeat the draws of an uninterrupted run.')
            return
        state = states[self.opt['rank']]
        random.setstate(state['python'])
        np.random.set_state(state['numpy'])
        torch.set_rng_state(state['torch'].cpu())
        if state['cuda'] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in state['cuda']])
        diffloss = getattr(self, 'cri_diff', None)
        if diffloss is not None and state['diffloss'] is not None:
            diffloss.set_rng_state(state['diffloss'])
