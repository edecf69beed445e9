"""``basicsr-diffloss-train`` and ``basicsr-diffloss-test``: the installed names of ``python -m basicsr_diffloss.train``
and ``python -m basicsr_diffloss.test``.

Each runs that module with the same arguments (``-opt X.yml [--launcher ...] [--auto_resume] [--debug]
[--force_yml ...]``), so the two forms never differ. Experiments go under ``./experiments/<name>``, test results
under ``./results/<name>``, relative to the current directory.
"""
import runpy
import sys


def _run(module, argv):
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    runpy.run_module(module, run_name='__main__')


def train(argv=None):
    _run('basicsr_diffloss.train', argv)


def test(argv=None):
    _run('basicsr_diffloss.test', argv)
