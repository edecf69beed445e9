"""Exact resume: a run stopped at iteration N and resumed reaches the same weights at N+k as one that never stopped.

Four pieces, all here:

- **Reading the state.** :func:`load_resume_state` loads ``path.resume_state`` or, with ``--auto_resume``, the
  newest readable ``<iter>.state`` (skipping, with a warning saying why, a truncated or empty newer one), on the CPU
  on a machine without CUDA, and refuses in one line a file that is no training state (a ``.pth`` network, a
  truncated file) or a state of another experiment.
- **Random states.** :class:`ReliableTrainingMixin` adds every rank's random states (python, numpy, torch, CUDA, and
  the DiffLoss generator when the model has ``cri_diff``) to BasicSR's training state and restores them on resume,
  each rank its own.
- **Data position.** BasicSR restarts the interrupted epoch from its first batch. :func:`load_resume_state` records
  the resumed ``(epoch, iter)`` as ``opt['resume_position']`` and :func:`create_train_val_dataloader` makes that
  epoch skip the batches already trained on (:class:`SkipFirstOnce`).
- **States that survive a crash.** Checkpoints and training states are written through :func:`atomic_torch_save`.

Exact with ``num_worker_per_gpu: 0`` (BasicSR re-seeds data workers identically every epoch, so with workers the
augmentations of the resumed epoch differ) and with the same number of processes. ``basicsr_diffloss.patches``
installs :func:`load_resume_state` and :func:`create_train_val_dataloader` in ``basicsr.train``.
"""
import os
import random
import sys
from contextlib import contextmanager

from os import path as osp

import basicsr.train
import numpy as np
import torch
import torch.distributed as dist
from basicsr.utils import check_resume, get_root_logger, scandir

from ..compat import resume_device, train_epochs
from ..options import OptionError

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
            **(diffloss.training_state() if diffloss is not None else {}),
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
        diffloss = getattr(self, 'cri_diff', None)
        if len(states) != self.opt['world_size']:
            # DiffLoss's strength weights, guard momenta and back-off state are the same on every rank: carried over
            if diffloss is not None:
                diffloss.load_training_state(states[0], random_state=False)
            get_root_logger().warning(
                f"Resume: the state was saved by {len(states)} processes and this run has {self.opt['world_size']}: "
                'the random states (data augmentation, DiffLoss noise and timesteps) restart, so the run does not '
                "repeat an uninterrupted run's draws; DiffLoss's strength weights, guard momenta and back-off state "
                'are carried over.')
            return
        state = states[self.opt['rank']]
        random.setstate(state['python'])
        np.random.set_state(state['numpy'])
        torch.set_rng_state(state['torch'].cpu())
        if state['cuda'] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in state['cuda']])
        if diffloss is not None:
            diffloss.load_training_state(state)


class UnreadableState(Exception):
    """A file that cannot be resumed from; the message says why."""


def _read_state(path, device):
    """The training state in ``path``; UnreadableState when it is empty, truncated or not a training state."""
    if osp.getsize(path) == 0:
        raise UnreadableState('it is empty (0 bytes)')
    try:
        # The state holds optimizer, scheduler and random states written by this same pipeline.
        state = torch.load(path, map_location=device, weights_only=False)
    except Exception as error:  # noqa: BLE001  (torch raises RuntimeError, EOFError, pickle errors, ... here)
        reason = str(error).strip().splitlines()[0].split('. ')[0] if str(error).strip() else type(error).__name__
        raise UnreadableState(f'it is truncated or not a torch file ({reason})') from error
    if not isinstance(state, dict) or not {'iter', 'epoch', 'optimizers'} <= set(state):
        network = isinstance(state, dict) and any(key.startswith('params') for key in state)
        raise UnreadableState('it holds network weights (a net_g_*.pth), not a training state: give a '
                              "training_states/<iter>.state, or load weights alone with path.pretrain_network_g"
                              if network else 'it is not a training state (no iter, epoch and optimizers)')
    return state


def _states_newest_first(opt):
    """The ``<iter>.state`` files under ``experiments/<name>/training_states``, newest iteration first."""
    folder = osp.join(opt['root_path'], 'experiments', opt['name'], 'training_states')
    if not osp.isdir(folder):
        return []
    found = [name for name in scandir(folder, suffix='state', recursive=False) if name[:-len('.state')].isdigit()]
    return [osp.join(folder, name) for name in sorted(found, key=lambda name: -int(name[:-len('.state')]))]


def _experiment_problem(opt, path, state):
    """Why ``state`` (read from ``path``) cannot resume this experiment, or None: it must lie in (or come from) this
    experiment's training_states, and the networks of its iteration must be in this experiment's models folder."""
    folder = osp.dirname(osp.abspath(path))
    owner = osp.basename(osp.dirname(folder))
    if osp.basename(folder) == 'training_states' and owner != opt['name']:
        return (f"it is a state of experiment '{owner}' and this run is named '{opt['name']}' (its weights would come "
                f"from experiments/{opt['name']}/models); resume with name: {owner}, or give a state of this run")
    models = osp.join(opt['root_path'], 'experiments', opt['name'], 'models')
    for key in opt:
        network = key[len('network_'):] if key.startswith('network_') else None
        checkpoint = osp.join(models, f"net_{network}_{state['iter']}.pth")
        if network and not osp.isfile(checkpoint):
            return (f"iteration {state['iter']} has no {checkpoint} to resume the weights from; give a state of "
                    'this experiment whose checkpoint exists')
    return None


_deferred_warnings = []  # logged once BasicSR has opened the log file (create_train_val_dataloader)


def load_resume_state(opt):
    """The training state to resume from (or None), recording its position as ``opt['resume_position']``.

    ``--auto_resume`` takes the newest state that can be read and resumed and warns about each newer one it skipped
    and why; ``path.resume_state`` must be a readable training state of this experiment. Called by train_pipeline
    before its log file exists, so the warnings are logged with the data loaders' first lines.
    """
    device = resume_device()
    if opt['auto_resume']:
        candidates = _states_newest_first(opt)
        state = path = None
        for candidate in candidates:
            try:
                state = _read_state(candidate, device)
                problem = _experiment_problem(opt, candidate, state)
                if problem:
                    raise UnreadableState(problem)
            except UnreadableState as reason:
                state = None
                message = f"--auto_resume: skipped '{candidate}': {reason}."
                _deferred_warnings.append(message)
                print(f'WARNING: {message}', file=sys.stderr, flush=True)
                continue
            path = candidate
            break
        if candidates and state is None:
            raise OptionError(f"--auto_resume: none of the {len(candidates)} states under experiments/{opt['name']}/"
                              'training_states can be resumed from (see the warnings above); remove them to train '
                              'from the start.')
        if state is None:
            return None
        opt['path']['resume_state'] = path
    else:
        path = opt['path'].get('resume_state')
        if not path:
            return None
        if not osp.isfile(path):
            raise OptionError(f"path.resume_state: '{path}' is not a file.")
        try:
            state = _read_state(path, device)
        except UnreadableState as reason:
            raise OptionError(f"path.resume_state: '{path}' cannot be resumed from: {reason}.") from None
        problem = _experiment_problem(opt, path, state)
        if problem:
            raise OptionError(f"path.resume_state: '{path}' cannot be resumed from: {problem}.")
    check_resume(opt, state['iter'])
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
    """BasicSR's loaders, with as many epochs as reach ``train.total_iter`` (compat 10); after a resume, the first
    epoch continues after the batches already trained on."""
    while _deferred_warnings:
        logger.warning(_deferred_warnings.pop(0))
    train_loader, train_sampler, val_loaders, total_epochs, total_iters = _basicsr_create_train_val_dataloader(
        opt, logger)
    total_epochs = train_epochs(opt, train_loader, total_epochs, logger)
    if opt.get('resume_position'):
        epoch, current_iter = opt['resume_position']
        done = current_iter - epoch * len(train_loader)
        if done > 0:
            batch_sampler = train_loader.batch_sampler
            batch_sampler.sampler = SkipFirstOnce(batch_sampler.sampler, done * batch_sampler.batch_size)
            logger.info(f'Resume: epoch {epoch} continues after its first {done} batches.')
    return train_loader, train_sampler, val_loaders, total_epochs, total_iters
