"""``python -m basicsr_diffloss.test -opt X.yml [--launcher ...] [--force_yml ...]``.

BasicSR's test pipeline with this package registered. Results are written under ``./results/<name>``, relative to
the current directory.
"""
import os

import basicsr_diffloss  # noqa: F401  (repairs basicsr and registers everything)
from basicsr.test import test_pipeline

if __name__ == '__main__':
    test_pipeline(os.getcwd())
