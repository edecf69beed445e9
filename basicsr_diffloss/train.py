"""``python -m basicsr_diffloss.train -opt X.yml [--launcher ...] [--auto_resume] [--debug] [--force_yml ...]``.

BasicSR's train pipeline with this package registered. Experiments are written under ``./experiments/<name>``
(``./tb_logger/<name>`` for TensorBoard), relative to the current directory. A mistake in the options ends it
with one line (the traceback with ``--debug``).
"""
import os

import basicsr_diffloss  # noqa: F401  (repairs basicsr and registers everything)
from basicsr.train import train_pipeline

from basicsr_diffloss.commands.user_errors import exit_on_user_error

if __name__ == '__main__':
    exit_on_user_error('basicsr-diffloss-train', lambda argv: train_pipeline(os.getcwd()))
