"""Exact resume: a run stopped at iteration N and resumed reaches the same weights at N+k as one that never stopped.

Three pieces, all here:

- **Random states.** :class:`ReliableTrainingMixin` adds every rank's random states (python, numpy, torch, CUDA, and
  the DiffLoss generator when the model has ``cri_diff``) to BasicSR's training state and restores them on resume,
  each rank its own.
- **Data position.** BasicSR restarts the interrupted epoch from its first batch. :func:`load_resume_state` records
  the resumed ``(epoch, iter)`` as ``opt['resume_position']`` and :func:`create_train_val_dataloader` makes that
  epoch skip the batches already trained on (:class:`SkipFirstOnce`).
- **States that survive a crash.** Checkpoints and training states are written through :func:`atomic_torch_save`.

Exact with ``num_worker_per_gpu: 0`` (BasicSR re-seeds data workers identically every epoch, so with workers the
augmentations of the resumed epoch differ) and with the same number of processes. The repairs this builds on (resume
on a machine without CUDA, DDP on the CPU) are in ``basicsr_diffloss.compat``, imported before this module.
"""
import os
import random
from contextlib import contextmanager

import basicsr.train
import numpy as np
import torch
import torch.distributed as dist
from basicsr.utils import get_root_logger

_load_resume_state = basicsr.train.load_resume_state  # basicsr_diffloss.compat's, which works without CUDA
_basicsr_create_train_val_dataloader = basicsr.train.create_train_val_dataloader


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
    """Makes a BasicSR model's checkpoints atomic and its training states hold every rank's random states.

    - ``save_network`` and ``save_training_state`` write through :func:`atomic_torch_save`.
    - ``save_training_state`` adds ``rng_states`` (one entry per rank) to BasicSR's state; ``resume_training``
      restores this rank's entry. Together with the resumed data position (:func:`create_train_val_dataloader`),
      a resumed run repeats an uninterrupted one.
    """

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
            'diffloss_strength': diffloss.strength.state_dict() if diffloss is not None and diffloss.strength else None,
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
        if diffloss is not None and diffloss.strength and state.get('diffloss_strength'):
            diffloss.strength.load_state_dict(state['diffloss_strength'])


def load_resume_state(opt):
    """The training state to resume from (or None), recording its position as ``opt['resume_position']``."""
    state = _load_resume_state(opt)
    if state is not None:
        opt['resume_position'] = (state['epoch'], state['iter'])
    return state


class SkipFirstOnce:
    """A sampler wrapper whose first pass leaves out the first ``count`` indices; later passes are unchanged."""

    def __init__(self, sampler, count):
        self.sampler = sampler
        self.count = count

    def __iter__(self):
        indices = iter(self.sampler)
        for _ in range(self.count):
            next(indices, None)
        self.count = 0
        return indices

    def __len__(self):
        return len(self.sampler)


def create_train_val_dataloader(opt, logger):
    """BasicSR's loaders; after a resume, the first epoch continues after the batches already trained on."""
    result = _basicsr_create_train_val_dataloader(opt, logger)
    train_loader = result[0]
    if opt.get('resume_position') and train_loader is not None:
        epoch, current_iter = opt['resume_position']
        done = current_iter - epoch * len(train_loader)
        if done > 0:
            batch_sampler = train_loader.batch_sampler
            batch_sampler.sampler = SkipFirstOnce(batch_sampler.sampler, done * batch_sampler.batch_size)
            logger.info(f'Resume: epoch {epoch} continues after its first {done} batches.')
    return result


basicsr.train.load_resume_state = load_resume_state
basicsr.train.create_train_val_dataloader = create_train_val_dataloader
