"""``python -m basicsr_diffloss.test -opt X.yml [--launcher ...] [--force_yml ...]``.

BasicSR's test pipeline with this package registered. Results are written under ``./results/<name>``, relative to
the current directory. A mistake in the options ends it with one line (the traceback with ``--debug``).
"""
import os

import basicsr_diffloss  # noqa: F401  (repairs basicsr and registers everything)
from basicsr.test import test_pipeline

from basicsr_diffloss.commands.user_errors import exit_on_user_error

if __name__ == '__main__':
    exit_on_user_error('basicsr-diffloss-test', lambda argv: test_pipeline(os.getcwd()))
