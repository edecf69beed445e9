#!/usr/bin/env bash
# The main job: build the demo data from scikit-image's photos, then train EDSR x4 with L1 + DiffLoss on the CPU,
# with the package's default prior, and validate it (PSNR, SSIM, NIQE) on a held-out photo. Under 2 minutes on
# 2 CPU cores. Outputs: datasets/demo/, experiments/demo_EDSR_x4_diffloss/.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
"$PY" scripts/make_demo_data.py
"$PY" -m basicsr_diffloss.train -opt options/train/demo/train_EDSR_x4_demo_diffloss.yml "$@"
