"""``python -m basicsr_diffloss.train -opt X.yml [--launcher ...] [--auto_resume] [--debug] [--force_yml ...]``.

BasicSR's train pipeline with this package registered. Experiments are written under ``./experiments/<name>``
(``./tb_logger/<name>`` for TensorBoard), relative to the current directory.
"""
import os

import basicsr_diffloss  # noqa: F401  (repairs basicsr and registers everything)
from basicsr.train import train_pipeline

if __name__ == '__main__':
    train_pipeline(os.getcwd())
