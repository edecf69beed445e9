"""Repairs of basicsr 1.4.2 breakages, written from outside: the functions and classes that replace BasicSR's.

Only repairs live here, and this module installs none of them but the first (basicsr imports the missing module
when it is imported): ``basicsr_diffloss.patches`` installs every replacement, each once, with the list of what it
replaces and why. What makes a resumed run repeat an uninterrupted one (reading states, data position, random
states, atomic checkpoints) is ``basicsr_diffloss.models.exact_resume``.

1. torchvision >= 0.17 removed ``torchvision.transforms.functional_tensor``, which
   ``basicsr/data/degradations.py`` imports for ``rgb_to_grayscale``. The public
   ``torchvision.transforms.functional`` provides the same function, so it is registered under the old name.
2. ``basicsr.train.load_resume_state`` maps the resume state onto ``torch.cuda.current_device()``, which fails on a
   machine without CUDA: :func:`resume_device` is the CPU there (used by exact_resume's ``load_resume_state``).
3. ``--launcher pytorch`` initialises NCCL, and ``BaseModel.model_to_device`` wraps networks in DDP with
   ``device_ids=[torch.cuda.current_device()]``: both need CUDA. Without CUDA, :func:`init_dist` initialises gloo
   and :func:`model_to_device` wraps networks in DDP without device ids.
4. ``parse_options`` seeds the generators with ``manual_seed + rank`` *before* it applies ``--force_yml``, so
   ``--force_yml manual_seed=N`` changed the logged seed and nothing else. :func:`parse_options` seeds them again
   after the overrides, the same way (a random seed when none is given).
5. ``MessageLogger`` estimates the time left from ``total_iter - current_iter - 1`` iterations, so the last log
   line reads ``eta: -1 day, 23:59:59`` once an iteration takes a second or more. :class:`MessageLogger` counts
   ``total_iter - current_iter`` (0:00:00 at the end) over the iterations timed so far.
6. ``train_pipeline`` ends by validating again after its loop, labelled with a counter that ran past ``total_iter``
   (``iter 402`` after 400 iterations), usually the weights it had just validated at 400 (which also moves
   "Best ... @ 400 iter" to 402). :func:`follow_end_of_training` makes a training model's final validation run
   only when the last trained iteration was not validated yet, labelled with that iteration; the "latest"
   checkpoint is saved as before.
7. Real-ESRGAN's models (basicsr's ``RealESRNetModel_basicsr`` and ``RealESRGANModel_basicsr``, and those of the
   ``realesrgan`` package when it is installed) put their JPEG simulator, USM sharpener and training-pair pool on
   the GPU with ``.cuda()``, so they fail on a machine without CUDA (and misplace them with ``num_gpu: 0``).
   :func:`on_model_device` makes ``.cuda()`` mean ``.to(model's device)`` inside their ``__init__`` and
   ``_dequeue_and_enqueue`` (``REAL_ESRGAN_MODELS``) when that device is not a GPU.
8. ``basicsr.utils.img_process_util.filter2D`` reshapes its input with ``.view``, which fails on the non-contiguous
   tensors that Real-ESRGAN's synthesis produces with current torch after the JPEG simulator (``view size is not
   compatible with input tensor's size and stride``). :func:`filter2D` passes a contiguous copy, in the modules of
   Real-ESRGAN's models that imported it.
9. ``train_pipeline`` never destroys the process group it initialised, so a multi-process run that has trained and
   saved everything can still die at interpreter exit (``terminate called without an active exception``, SIGABRT
   from gloo's threads: seen once in the DDP tests) and report failure. :func:`train_pipeline` destroys it at the end.
10. ``create_train_val_dataloader`` counts ``ceil(images x dataset_enlarge_ratio / (batch_size_per_gpu x world
    size))`` iterations per epoch, but the train loader drops an incomplete batch (``drop_last=True``) and, with one
    process on several GPUs, batches ``batch_size_per_gpu x num_gpu`` images: where it yields fewer batches, the
    epochs run out before ``total_iter`` (3 images in batches of 2, ``total_iter: 12``: "End of training" after
    iteration 7), and with a batch larger than the images it trains nothing. :func:`train_epochs` counts the epochs
    from the loader's length (used by exact_resume's ``create_train_val_dataloader``) and refuses a loader without
    a batch.
"""
import sys

import torchvision.transforms.functional

sys.modules.setdefault('torchvision.transforms.functional_tensor', torchvision.transforms.functional)

import functools  # noqa: E402
import math  # noqa: E402
import random  # noqa: E402
from contextlib import contextmanager  # noqa: E402

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from torch.nn.parallel import DistributedDataParallel  # noqa: E402

import basicsr.models  # noqa: E402
import basicsr.models.base_model  # noqa: E402
import basicsr.models.realesrgan_model  # noqa: E402
import basicsr.models.realesrnet_model  # noqa: E402
import basicsr.train  # noqa: E402
import basicsr.utils.img_process_util  # noqa: E402
import basicsr.utils.logger  # noqa: E402
import basicsr.utils.options  # noqa: E402
from basicsr.utils import get_root_logger, set_random_seed  # noqa: E402

from .options import OptionError  # noqa: E402  (imports nothing of basicsr or of the package)

_basicsr_parse_options = basicsr.utils.options.parse_options
_basicsr_init_dist = basicsr.utils.options.init_dist
_basicsr_model_to_device = basicsr.models.base_model.BaseModel.model_to_device

SEED_LIMIT = 2**32  # numpy accepts seeds in [0, 2**32)


# 2. Resume on a machine without CUDA.
def resume_device():
    """Where a training state is loaded: the current CUDA device, or the CPU on a machine without CUDA."""
    return torch.device('cuda', torch.cuda.current_device()) if torch.cuda.is_available() else torch.device('cpu')


# 3. Several processes on a machine without CUDA.
def init_dist(launcher, backend='nccl', **kwargs):
    """BasicSR's init_dist, except that ``pytorch`` on a machine without CUDA uses gloo."""
    if launcher == 'pytorch' and not torch.cuda.is_available():
        dist.init_process_group(backend='gloo')
        return
    _basicsr_init_dist(launcher, backend, **kwargs)


def model_to_device(self, net):
    """BasicSR's model_to_device, except that distributed networks on the CPU are wrapped without device ids."""
    if self.opt['dist'] and self.device.type == 'cpu':
        return DistributedDataParallel(net.to(self.device),
                                       find_unused_parameters=self.opt.get('find_unused_parameters', False))
    return _basicsr_model_to_device(self, net)


# 4. --force_yml manual_seed=N.
def check_seed(seed, world_size):
    """An OptionError unless ``seed`` is an integer that every rank's ``seed + rank`` keeps in numpy's range."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_LIMIT - world_size:
        raise OptionError(f"Option 'manual_seed': {seed!r} is not a seed; give an integer from 0 to "
                          f'{SEED_LIMIT - world_size} (e.g. --force_yml manual_seed=1), or ~ for a random one.')


def parse_options(root_path, is_train=True):
    """BasicSR's parse_options, then the generators seeded with ``manual_seed + rank`` as the overrides left it.

    When neither the option file nor ``--force_yml`` gives a seed, BasicSR has drawn one into ``opt['manual_seed']``;
    seeding with it again reproduces BasicSR's state, so only a forced seed changes anything.
    """
    opt, args = _basicsr_parse_options(root_path, is_train)
    seed = opt.get('manual_seed')
    if seed is None:  # `--force_yml manual_seed=~` asks for a random seed, as leaving it out of the file does
        seed = opt['manual_seed'] = random.randint(1, 10000)
    check_seed(seed, opt['world_size'])
    set_random_seed(seed + opt['rank'])
    return opt, args


# 5. A time left that is never negative.
class MessageLogger(basicsr.utils.logger.MessageLogger):
    """BasicSR's MessageLogger whose eta is the mean time of the iterations timed so far times the iterations left.

    BasicSR computes ``elapsed / (current - start_iter + 1) * (total_iter - current - 1)``; the message is still
    BasicSR's, with ``start_iter`` and ``total_iter`` set for the duration of the call so that it computes
    ``elapsed / timed * max(total_iter - current, 0)``.
    """

    def __init__(self, opt, start_iter=1, tb_logger=None):
        super().__init__(opt, start_iter, tb_logger)
        self.clock_iter = start_iter  # the iteration at which the clock (start_time) started

    def reset_start_time(self, current_iter=1):
        """BasicSR's train_pipeline restarts the clock after iteration 1 (not on resumed runs)."""
        super().reset_start_time()
        self.clock_iter = current_iter

    def __call__(self, log_vars):
        current_iter = log_vars['iter']
        timed = max(current_iter - self.clock_iter, 1)
        left = max(int(self.max_iters) - current_iter, 0)
        start_iter, max_iters = self.start_iter, self.max_iters
        self.start_iter, self.max_iters = current_iter - timed + 1, current_iter + 1 + left
        try:
            super().__call__(log_vars)
        finally:
            self.start_iter, self.max_iters = start_iter, max_iters


# 6. No second validation of the same weights at the end.
class _EndOfTraining:
    """Follows a training model: its last trained iteration, the last one validated on each validation loader, and
    whether train_pipeline's loop has ended."""

    def __init__(self, model):
        self.last_trained, self.last_validated = None, {}  # last_validated: per validation loader
        self.ended = False
        self.resume_training = model.resume_training
        self.optimize_parameters = model.optimize_parameters
        self.save = model.save
        self.validation = model.validation

    def resumed(self, resume_state):
        self.last_trained = resume_state['iter']
        return self.resume_training(resume_state)

    def optimized(self, current_iter):
        self.last_trained = current_iter
        return self.optimize_parameters(current_iter)

    def saved(self, epoch, current_iter):
        self.ended = self.ended or current_iter == -1  # train_pipeline saves "latest" only after its loop
        return self.save(epoch, current_iter)

    def validated(self, dataloader, current_iter, tb_logger, save_img=False):
        if self.ended and self.last_trained is not None:
            if self.last_validated.get(id(dataloader)) == self.last_trained:
                name = getattr(dataloader.dataset, 'opt', {}).get('name', 'the validation set')
                get_root_logger().info(f'No final validation on {name}: the weights of iteration '
                                       f'{self.last_trained} are validated above.')
                return None
            current_iter = self.last_trained
        self.last_validated[id(dataloader)] = current_iter
        return self.validation(dataloader, current_iter, tb_logger, save_img)


def follow_end_of_training(model):
    """``model`` (a training model) whose final validation is the repaired one (see item 6 above)."""
    follower = _EndOfTraining(model)
    model.resume_training = follower.resumed
    model.optimize_parameters = follower.optimized
    model.save = follower.saved
    model.validation = follower.validated
    return model


# 7. Real-ESRGAN's models without CUDA.
@contextmanager
def _cuda_means(device):
    """Within the block, ``tensor.cuda()`` and ``module.cuda()`` move to ``device``."""
    tensor_cuda, module_cuda = torch.Tensor.cuda, torch.nn.Module.cuda
    torch.Tensor.cuda = lambda tensor, *args, **kwargs: tensor.to(device)
    torch.nn.Module.cuda = lambda module, *args, **kwargs: module.to(device)
    try:
        yield
    finally:
        torch.Tensor.cuda, torch.nn.Module.cuda = tensor_cuda, module_cuda


def on_model_device(method):
    """``method`` of a BasicSR model with ``.cuda()`` meaning the model's device when that is not a GPU."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        device = getattr(self, 'device', None)
        if device is None:  # __init__: BaseModel's rule, before it sets self.device
            opt = args[0] if args else kwargs['opt']
            device = torch.device('cuda' if opt['num_gpu'] != 0 else 'cpu')
        if device.type == 'cuda':
            return method(self, *args, **kwargs)
        with _cuda_means(device):
            return method(self, *args, **kwargs)

    return wrapper


CUDA_CALLING_METHODS = ('__init__', '_dequeue_and_enqueue')
REAL_ESRGAN_MODELS = [basicsr.models.realesrnet_model.RealESRNetModel,
                      basicsr.models.realesrgan_model.RealESRGANModel]
try:  # the realesrgan package (optional extra) registers the names Real-ESRGAN's option files use
    import realesrgan.models.realesrgan_model  # noqa: E402
    import realesrgan.models.realesrnet_model  # noqa: E402
except ImportError:
    pass
else:
    REAL_ESRGAN_MODELS += [realesrgan.models.realesrnet_model.RealESRNetModel,
                           realesrgan.models.realesrgan_model.RealESRGANModel]


# 8. filter2D on non-contiguous tensors.
_basicsr_filter2D = basicsr.utils.img_process_util.filter2D


def filter2D(img, kernel):
    """BasicSR's filter2D on a contiguous ``img``."""
    return _basicsr_filter2D(img.contiguous(), kernel)


# 9. The process group destroyed at the end.
_basicsr_train_pipeline = basicsr.train.train_pipeline


def train_pipeline(root_path):
    """BasicSR's train pipeline, then the process group destroyed (repair 9)."""
    try:
        _basicsr_train_pipeline(root_path)
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


# 10. Epochs that reach total_iter.
def train_epochs(opt, train_loader, total_epochs, logger):
    """The number of epochs in which ``train_loader`` yields ``train.total_iter`` batches, logged where it differs
    from BasicSR's ``total_epochs`` (repair 10); an OptionError when the loader yields no batch."""
    dataset_opt = opt['datasets']['train']
    batch_size, ratio = dataset_opt['batch_size_per_gpu'], dataset_opt.get('dataset_enlarge_ratio', 1)
    images = len(train_loader.dataset)
    batches = len(train_loader)
    if not batches:
        samples = len(train_loader.sampler)  # this process's share of the enlarged set
        gpus = train_loader.batch_size // batch_size  # one process on several GPUs batches for all of them
        given = f'{batch_size}' if gpus == 1 else f'{batch_size} x {gpus} GPUs'
        share = f'{images} training images' if samples == images else (
            f'images each process gets per epoch, {samples} ({images} training images x dataset_enlarge_ratio '
            f"{ratio} / {opt['world_size']} processes)")
        smaller = f'set batch_size_per_gpu to {samples // gpus} or less, or ' if samples >= gpus else ''
        raise OptionError(f'datasets.train.batch_size_per_gpu: {given} is more than the {share}, and the train loader '
                          f'drops an incomplete batch, so it yields none and nothing would be trained; {smaller}add '
                          'training images.')
    total_iter = int(opt['train']['total_iter'])
    epochs = math.ceil(total_iter / batches)
    if epochs != total_epochs:
        counted = math.ceil(images * ratio / (batch_size * opt['world_size']))  # BasicSR's count, as it logged it
        logger.info(f'Training statistics corrected (the train loader drops an incomplete batch): iter number per '
                    f'epoch: {batches}, not {counted}; total epochs: {epochs}, not {total_epochs}; '
                    f'iters: {total_iter}.')
    return epochs
