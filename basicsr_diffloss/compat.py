"""Repairs for basicsr 1.4.2, applied from outside before anything else imports basicsr.

1. torchvision >= 0.17 removed ``torchvision.transforms.functional_tensor``, which
   ``basicsr/data/degradations.py`` imports for ``rgb_to_grayscale``. The public
   ``torchvision.transforms.functional`` provides the same function, so it is registered under the old name.
2. ``basicsr.train.load_resume_state`` maps the resume state onto ``torch.cuda.current_device()``, which fails on a
   machine without CUDA. It is replaced by :func:`load_resume_state`, which maps onto the CPU there.
3. A resumed run restarts the interrupted epoch from its first batch, so it trains on different data than a run
   that never stopped. :func:`create_train_val_dataloader` makes the first resumed epoch skip the batches the
   interrupted run had already used (the model restores the random states: models/reliable_training.py).
4. ``--launcher pytorch`` initialises NCCL on CUDA devices only; on a machine without CUDA it initialises gloo.
"""
import sys

import torchvision.transforms.functional

sys.modules.setdefault('torchvision.transforms.functional_tensor', torchvision.transforms.functional)

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from os import path as osp  # noqa: E402

import basicsr.train  # noqa: E402
import basicsr.utils.options  # noqa: E402
from basicsr.utils import check_resume, scandir  # noqa: E402

_basicsr_create_train_val_dataloader = basicsr.train.create_train_val_dataloader
_basicsr_init_dist = basicsr.utils.options.init_dist


def _latest_state_path(opt):
    """The newest ``<iter>.state`` under ``experiments/<name>/training_states``, or None."""
    state_dir = osp.join(opt['root_path'], 'experiments', opt['name'], 'training_states')
    if not osp.isdir(state_dir):
        return None
    iters = [int(name.split('.state')[0]) for name in scandir(state_dir, suffix='state', recursive=False)]
    return osp.join(state_dir, f'{max(iters)}.state') if iters else None


def load_resume_state(opt):
    """Load the training state named by ``--auto_resume`` or ``path.resume_state`` on CUDA or on the CPU.

    Also records the resumed position as ``opt['resume_position'] = (epoch, iter)`` for the data loader.
    """
    if opt['auto_resume']:
        path = _latest_state_path(opt)
        if path is not None:
            opt['path']['resume_state'] = path
    else:
        path = opt['path'].get('resume_state')
    if not path:
        return None
    device = torch.device('cuda', torch.cuda.current_device()) if torch.cuda.is_available() else torch.device('cpu')
    # The state holds optimizer, scheduler and random states written by this same pipeline.
    state = torch.load(path, map_location=device, weights_only=False)
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


def init_dist(launcher, backend='nccl', **kwargs):
    """BasicSR's init_dist, except that ``pytorch`` on a machine without CUDA uses gloo."""
    if launcher == 'pytorch' and not torch.cuda.is_available():
        dist.init_process_group(backend='gloo')
        return
    _basicsr_init_dist(launcher, backend, **kwargs)


basicsr.train.load_resume_state = load_resume_state
basicsr.train.create_train_val_dataloader = create_train_val_dataloader
basicsr.utils.options.init_dist = init_dist
