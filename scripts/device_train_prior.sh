#!/usr/bin/env bash
# Train the wider default prior of issue 25 on one GPU (options/train/prior/train_default_prior_v3_gpu.yml) in one
# prepared run of at most 9 minutes, and bring its weights back. Untested on a GPU so far: none has been lent to it.
#
# Here, once (pip access, and the photos of scripts/fetch_license_checked_photos.py):
#   bash scripts/device_train_prior.sh --prepare
#     -> .whl/ (scripts/device_cost_check.sh's wheels) and datasets/prior_photos_v2_device/{train,val} (JPEG,
#        native pixels, 14 MiB: the repository, wheels and photos stay under the 64 MiB a call carries); both are
#        ignored by git.
# On the GPU machine, from the repository root, with .whl and datasets/prior_photos_v2_device carried:
#   bash scripts/device_train_prior.sh [TRAIN_SECONDS]        (default 480; training stops there, or at total_iter)
#     -> $OUT/train.log, $OUT/prior.tar.part-* (the newest exported prior folder, in parts of 15 MiB: a file that
#        comes back from the machine may not exceed 16 MiB)
# Here again, with the files it sent back:
#   bash scripts/device_train_prior.sh --join FILES_FOLDER OUTPUT_FOLDER   -> a diffusers folder DiffusionPrior loads
set -euo pipefail
cd "$(dirname "$0")/.."
OPTIONS=options/train/prior/train_default_prior_v3_gpu.yml
PHOTOS=datasets/prior_photos_v2_device

if [ "${1:-}" = --prepare ]; then
    bash scripts/device_cost_check.sh --fetch-wheels
    python scripts/pack_photos_for_device.py --input datasets/prior_photos_v2/train --output "$PHOTOS/train" \
        --max_side 1280
    python scripts/pack_photos_for_device.py --input datasets/prior_photos_v2/val --output "$PHOTOS/val" --max_side 256
    exit 0
fi
if [ "${1:-}" = --join ]; then
    mkdir -p "$3"
    cat "$2"/prior.tar.part-* | tar -x -C "$3" --strip-components=1
    python -c "import sys; from basicsr_diffloss.priors import DiffusionPrior; \
p = DiffusionPrior(pretrained=sys.argv[1]); print(sys.argv[1], sum(x.numel() for x in p.unet.parameters()), \
'parameters')" "$3"
    exit 0
fi

seconds=${1:-480}
output=${OUT:-results/device_prior}
mkdir -p "$output"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
# SIGINT at the limit: BasicSR stops where it is; the checkpoints every 500 iterations hold the newest prior.
timeout -k 30 -s INT "$seconds" python3 -m basicsr_diffloss.train -opt "$OPTIONS" 2>&1 | tee "$output/train.log" || true
experiment=experiments/$(sed -n 's/^name: //p' "$OPTIONS")
newest=$(ls -d "$experiment"/models/prior_* 2>/dev/null | sort -V | tail -n 1)  # prior_latest sorts last: the end
[ -n "$newest" ] || { echo "no prior was exported: see $output/train.log"; exit 1; }
echo "sending back $newest"
tar -c -C "$(dirname "$newest")" "$(basename "$newest")" | split -b 15M - "$output/prior.tar.part-"
ls -la "$output"
