#!/usr/bin/env bash
# The GPU rows of docs/performance.md ("The default step"): L1, L1+VGG and L1+DiffLoss (default, bf16, bf16+compile,
# fp32+score_difference) on the ADM-256-shaped random prior, EDSR-M at 256x256, batch 4 and 16, with ms/step, ratios
# to L1 and L1+VGG, peak memory and the floor ratio. One run of at most 8 minutes on one CUDA GPU.
#
# The GPU machine has torch but not this project's other packages; they travel as wheels in .whl/ (git-ignored
# through .git/info/exclude). Once, on a machine with pip access, from the repository root:
#   bash scripts/device_cost_check.sh --fetch-wheels
# Then on the GPU machine, with .whl carried, from the repository root:
#   bash scripts/device_cost_check.sh [OUTPUT_FOLDER]        (default: $OUT, else results/device_cost)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = --fetch-wheels ]; then
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
    mkdir -p .whl
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
        diffusers==0.42.1 importlib_metadata addict future lmdb yapf platformdirs piq==0.8.0 lpips==0.1.4 \
        dists-pytorch==0.1
    # basicsr 1.4.2 is an sdist (pure Python): build its wheel here.
    python3 -m pip wheel -q --no-deps --no-build-isolation basicsr==1.4.2 -w .whl
    ls .whl
    exit 0
fi

output=${1:-${OUT:-results/device_cost}}
mkdir -p "$output"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$output/gpu.txt"
for batch in 4 16; do
    # compile warms up 3 more steps per sweep; one sweep each keeps the run inside its 8 minutes.
    timeout 220 python3 scripts/benchmark.py --device cuda --restorers edsr --priors adm256 --gt-size 256 \
        --batch "$batch" --variants default bf16 bf16+compile fp32+score_difference --warmup 2 --compile-warmup 3 \
        --steps 5 --repeats 1 --out "$output/adm256_batch$batch.md" --json "$output/adm256_batch$batch.json" \
        2>&1 | tee "$output/adm256_batch$batch.log" || echo "batch $batch: stopped (see its log)"
done
