#!/usr/bin/env bash
# Create .venv (Python 3.11) and install basicsr-diffloss with BasicSR 1.4.2 and the test tools.
# torch 2.14.1 + torchvision 0.29.1 is a pair that runs on the CPU and on CUDA machines; basicsr 1.4.2 is an sdist
# whose setup imports torch, so it is built without build isolation against the torch installed first.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
pip() { .venv/bin/python -m pip "$@"; }
pip install -q --upgrade 'pip' 'setuptools>=70' wheel
pip install -q 'torch==2.14.1' 'torchvision==0.29.1'
pip install -q --no-build-isolation 'basicsr==1.4.2'
# Real-ESRGAN's models and datasets (the `realesrgan` extra). --no-deps: its requirements add gfpgan and facexlib
# (and through them tb-nightly, numba, filterpy, ...), which only its face-enhancement inference script uses; its
# models, datasets and archs need nothing beyond basicsr's own dependencies.
pip install -q --no-deps 'realesrgan==0.3.0'
pip install -q --no-build-isolation -e '.[test]'
