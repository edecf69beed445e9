"""Training runs of a comparison: ``python -m basicsr_diffloss.train`` with progress; finished experiment folders;
the checks that the two runs are two networks, each in its own folder."""
import glob
import os
import re
import subprocess
import sys
from collections import deque
from os import path as osp

import torch
from tqdm import tqdm

from ..options import MissingFileError, UserError
from .options import load_option_file
from .train_log import parse_train_log

ITERATION = re.compile(r'\[epoch:\s*\d+, iter:\s*([\d,]+),')
LOGGED_TOTAL_ITER = re.compile(r'^\s+total_iter: (\d+)\s*$')  # BasicSR logs the options, --force_yml applied
LOGGED_DIFFUSION_OPT = re.compile(r'^\s+diffusion_opt:\[\s*$')


def train(option_file, force_yml, total_iter, label, output_log):
    """Train ``option_file`` in a subprocess in the current directory, with a progress bar of its logged iterations.

    Args:
        option_file (str): the BasicSR option file.
        force_yml (list[str]): ``--force_yml`` entries passed on.
        total_iter (int): the run's ``train.total_iter``, for the progress bar.
        label (str): the bar's name.
        output_log (str): where the subprocess's whole output is written.
    """
    command = [sys.executable, '-m', 'basicsr_diffloss.train', '-opt', option_file]
    if force_yml:
        command += ['--force_yml', *force_yml]
    tail = deque(maxlen=40)
    os.makedirs(osp.dirname(output_log) or '.', exist_ok=True)
    with open(output_log, 'w') as log, tqdm(total=total_iter, desc=f'train {label}', unit='iter') as bar:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in process.stdout:
            log.write(line)
            tail.append(line)
            match = ITERATION.search(line)
            if match:
                bar.update(min(int(match.group(1).replace(',', '')), total_iter) - bar.n)
        code = process.wait()
        if not code:  # done: the last iterations may not have been logged (logger.print_freq)
            bar.update(total_iter - bar.n)
    if code:
        raise RuntimeError(f"Training {label} ({' '.join(command)}) failed with exit code {code}; its output is in "
                           f'{output_log}. Last lines:\n' + ''.join(tail))


class Experiment:
    """A finished BasicSR experiment folder: its option file copy, latest checkpoint and newest training log, the
    iteration that checkpoint holds, and whether the run trained with the diffusion term."""

    def __init__(self, folder):
        if not osp.isdir(folder):
            raise MissingFileError(f"Experiment folder '{folder}' does not exist.")
        self.folder = folder
        self.option_file = self._newest(osp.join(folder, '*.yml'), 'an option file copy (*.yml)')
        self.opt = load_option_file(self.option_file)
        latest = osp.join(folder, 'models', 'net_g_latest.pth')
        self.checkpoint = latest if osp.isfile(latest) else self._last_checkpoint()
        self.train_log = self._newest(osp.join(folder, 'train_*.log'), 'a training log (train_*.log)')
        with open(self.train_log, errors='replace') as f:
            log = f.read().splitlines()
        logged_total = [int(m.group(1)) for line in log if (m := LOGGED_TOTAL_ITER.match(line))]
        number = re.search(r'net_g_(\d+)\.pth$', self.checkpoint)
        # net_g_latest.pth is written once the loop has run train.total_iter iterations, as the log's options say.
        self.iterations = int(number.group(1)) if number else (logged_total[0] if logged_total else None)
        self.diffusion_evidence = [what for what, found in (
            ('its option file copy has train.diffusion_opt', bool((self.opt.get('train') or {}).get('diffusion_opt'))),
            ("its training log's options have train.diffusion_opt", any(map(LOGGED_DIFFUSION_OPT.match, log))),
            ('its training log has l_diff_* terms', any(key.startswith('l_diff') for key in
                                                         parse_train_log(self.train_log)[0]))) if found]

    @staticmethod
    def _newest(pattern, what):
        found = sorted(glob.glob(pattern), key=osp.getmtime)
        if not found:
            raise MissingFileError(f'{osp.dirname(pattern)} holds no {what}: is it a BasicSR experiment folder?')
        return found[-1]

    def _last_checkpoint(self):
        checkpoints = glob.glob(osp.join(self.folder, 'models', 'net_g_*.pth'))
        numbered = [(int(m.group(1)), path) for path in checkpoints if (m := re.search(r'net_g_(\d+)\.pth$', path))]
        if not numbered:
            raise MissingFileError(f"{self.folder}/models holds no net_g_*.pth: did the training save a checkpoint?")
        return max(numbered)[1]


def split_name_override(force_yml):
    """``(X, the other entries)`` for ``--force_yml`` entries holding ``name=X`` (the last one counts), else
    ``(None, entries)``."""
    name, others = None, []
    for entry in force_yml or ():
        keys, _, value = entry.partition('=')
        if keys.strip() == 'name':
            name = value.strip()
        else:
            others.append(entry)
    return name, others


def run_force_yml(force_yml, run):
    """The ``--force_yml`` entries of one run of a comparison: a ``name=X`` entry becomes ``name=X_<run>`` (``run``:
    ``baseline`` or ``diffloss``), so that the two runs train into different experiment folders."""
    name, others = split_name_override(force_yml)
    return others + [f'name={name}_{run}'] if name else others


def check_experiments(experiments, started=None):
    """Make sure a comparison evaluates two different networks, each from its own run's folder.

    Args:
        experiments (dict): run -> :class:`Experiment`, two of them.
        started (dict | None): run -> the time its training started (``time.time()``), when the comparison trained
            them: each checkpoint and training log must have been written since.

    Raises:
        ValueError: the two runs share a folder or a checkpoint file, a checkpoint lies outside its run's folder
            (e.g. a link into the other's), or a file is older than the training that should have written it.
    """
    (first, one), (second, other) = experiments.items()
    if osp.realpath(one.folder) == osp.realpath(other.folder):
        raise ValueError(f"the {first} and {second} runs are the same experiment folder ('{one.folder}'): a network "
                         'compared with itself.')
    for run, experiment in experiments.items():
        folder = osp.realpath(experiment.folder)
        if osp.commonpath([folder, osp.realpath(experiment.checkpoint)]) != folder:
            raise ValueError(f"the {run} checkpoint '{experiment.checkpoint}' lies outside its experiment folder "
                             f"'{experiment.folder}' (it is '{osp.realpath(experiment.checkpoint)}').")
        for what, path in (('checkpoint', experiment.checkpoint), ('training log', experiment.train_log)):
            if started and osp.getmtime(path) < started[run] - 1:  # 1 s: file systems with coarse times
                raise ValueError(f"the {run} {what} '{path}' is older than the {run} training that should have "
                                 'written it: that training wrote somewhere else, so this is not its network.')
    if osp.samefile(one.checkpoint, other.checkpoint):
        raise ValueError(f"the {first} and {second} runs have the same checkpoint file ('{one.checkpoint}', "
                         f"'{other.checkpoint}').")


def check_roles(experiments):
    """The +DiffLoss run must have trained with the diffusion term; a baseline that did and a +DiffLoss run that did
    not is a swapped pair. Raises UserError; returns a warning (or None) when both trained with it."""
    baseline, diffloss = experiments['baseline'], experiments['diffloss']
    if baseline.diffusion_evidence and not diffloss.diffusion_evidence:
        raise UserError(f"the runs are swapped: the baseline '{baseline.folder}' trained with DiffLoss "
                        f"({baseline.diffusion_evidence[0]}) and the +DiffLoss run '{diffloss.folder}' without it; "
                        f'give --baseline_exp {diffloss.folder} --diffloss_exp {baseline.folder}.')
    if not diffloss.diffusion_evidence:
        raise UserError(f"the +DiffLoss run '{diffloss.folder}' trained without the diffusion term (no "
                        'train.diffusion_opt in its option file copy or its log, no l_diff_* in its log), and so did '
                        'the baseline: give a run trained with train.diffusion_opt as --diffloss_exp.')
    if baseline.diffusion_evidence:
        return (f"the baseline '{baseline.folder}' trained with DiffLoss too ({baseline.diffusion_evidence[0]}): "
                'the report compares two DiffLoss settings, not DiffLoss against a run without it')
    return None


def identical_weights(first, second):
    """Whether two checkpoint files hold the same tensors (False when one cannot be read as plain tensors)."""

    def equal(a, b):
        if isinstance(a, torch.Tensor):
            return isinstance(b, torch.Tensor) and a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b)
        if isinstance(a, dict):
            return isinstance(b, dict) and a.keys() == b.keys() and all(equal(a[key], b[key]) for key in a)
        return a == b

    try:
        return equal(*(torch.load(path, map_location='cpu', weights_only=True) for path in (first, second)))
    except Exception:  # noqa: BLE001  (a best-effort warning; evaluation has loaded both already)
        return False
