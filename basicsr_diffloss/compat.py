"""Repairs for basicsr 1.4.2's known breakages, applied from outside before basicsr is imported.

1. torchvision >= 0.17 removed ``torchvision.transforms.functional_tensor``, which
   ``basicsr/data/degradations.py`` imports for ``rgb_to_grayscale``. The public
   ``torchvision.transforms.functional`` provides the same function, so it is registered under the old name.
2. ``basicsr.train.load_resume_state`` maps the resume state onto ``torch.cuda.current_device()``, which fails on a
   machine without CUDA. It is replaced by :func:`load_resume_state`, which maps onto the CPU there.
"""
import sys

import torchvision.transforms.functional

sys.modules.setdefault('torchvision.transforms.functional_tensor', torchvision.transforms.functional)

import torch  # noqa: E402
from os import path as osp  # noqa: E402

import basicsr.train  # noqa: E402
from basicsr.utils import check_resume, scandir  # noqa: E402


def _latest_state_path(opt):
    """The newest ``<iter>.state`` under ``experiments/<name>/training_states``, or None."""
    state_dir = osp.join(opt['root_path'], 'experiments', opt['name'], 'training_states')
    if not osp.isdir(state_dir):
        return None
    iters = [int(name.split('.state')[0]) for name in scandir(state_dir, suffix='state', recursive=False)]
    return osp.join(state_dir, f'{max(iters)}.state') if iters else None


def load_resume_state(opt):
    """Load the training state named by ``--auto_resume`` or ``path.resume_state`` on CUDA or on the CPU."""
    if opt['auto_resume']:
        path = _latest_state_path(opt)
        if path is not None:
            opt['path']['resume_state'] = path
    else:
        path = opt['path'].get('resume_state')
    if not path:
        return None
    device = torch.device('cuda', torch.cuda.current_device()) if torch.cuda.is_available() else torch.device('cpu')
    # The state holds optimizer and scheduler states written by this same pipeline (a Counter among them).
    state = torch.load(path, map_location=device, weights_only=False)
    check_resume(opt, state['iter'])
    return state


basicsr.train.load_resume_state = load_resume_state
