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
pip install -q --no-build-isolation -e '.[test]'
