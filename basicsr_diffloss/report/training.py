"""Training runs of a comparison: ``python -m basicsr_diffloss.train`` with progress; finished experiment folders."""
import glob
import os
import re
import subprocess
import sys
from collections import deque
from os import path as osp

from tqdm import tqdm

from .options import load_option_file

ITERATION = re.compile(r'\[epoch:\s*\d+, iter:\s*([\d,]+),')


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
    if code:
        raise RuntimeError(f"Training {label} ({' '.join(command)}) failed with exit code {code}; its output is in "
                           f'{output_log}. Last lines:\n' + ''.join(tail))


class Experiment:
    """A finished BasicSR experiment folder: its option file copy, latest checkpoint and newest training log."""

    def __init__(self, folder):
        if not osp.isdir(folder):
            raise FileNotFoundError(f"Experiment folder '{folder}' does not exist.")
        self.folder = folder
        self.option_file = self._newest(osp.join(folder, '*.yml'), 'an option file copy (*.yml)')
        self.opt = load_option_file(self.option_file)
        latest = osp.join(folder, 'models', 'net_g_latest.pth')
        self.checkpoint = latest if osp.isfile(latest) else self._last_checkpoint()
        self.train_log = self._newest(osp.join(folder, 'train_*.log'), 'a training log (train_*.log)')

    @staticmethod
    def _newest(pattern, what):
        found = sorted(glob.glob(pattern), key=osp.getmtime)
        if not found:
            raise FileNotFoundError(f'{osp.dirname(pattern)} holds no {what}: is it a BasicSR experiment folder?')
        return found[-1]

    def _last_checkpoint(self):
        checkpoints = glob.glob(osp.join(self.folder, 'models', 'net_g_*.pth'))
        numbered = [(int(m.group(1)), path) for path in checkpoints if (m := re.search(r'net_g_(\d+)\.pth$', path))]
        if not numbered:
            raise FileNotFoundError(f"{self.folder}/models holds no net_g_*.pth: did the training save a checkpoint?")
        return max(numbered)[1]
