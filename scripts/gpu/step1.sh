#!/usr/bin/env bash
# GPU side, call 1 of 2 (scripts/gpu/README.md): install the carried wheels, unpack part 1 of the data, check
# CUDA, run the GPU tests and the training-throughput benchmark (CUDA, mixed precision). Results go to $OUT.
#   DRY_RUN=1: the same steps on this CPU machine with tiny settings (no wheel install), to test the scripts.
set -uo pipefail
cd "$(dirname "$0")/../.."
source scripts/gpu/env.sh
if [ "${DRY_RUN:-0}" != 1 ]; then
  log "installing $(ls .gpukit/wheels | wc -l) wheels into .gpudata/site"
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target .gpudata/site .gpukit/wheels/*.whl || { echo "step1: wheel install failed" >&2; exit 5; }
fi
log "unpacking part 1 of the data"
rm -f .gpudata/pets/.part1-done
tar -xf .gpukit/part1.tar -C .gpudata/pets && touch .gpudata/pets/.part1-done || { echo "step1: no .gpukit/part1.tar" >&2; exit 5; }
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
  "$PYTHON" -c "import torch, albumentations, petseg, segmentation_models_pytorch as smp
print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available(),
      torch.cuda.get_device_name() if torch.cuda.is_available() else '')
print('albumentations', albumentations.__version__, 'smp', smp.__version__, 'petseg', petseg.__version__)"
} 2>&1 | tee "$OUT/environment.txt" || exit 5
log "GPU tests"
"$PYTHON" -m pytest tests/training/test_gpu.py -m gpu -q -p no:cacheprovider 2>&1 | tee "$OUT/gpu_tests.txt"
log "training-throughput benchmark"
if [ "${DRY_RUN:-0}" = 1 ]; then
  bench=(--device cpu --config quick --sizes 64 --batch 2 --warmup 1 --iters 1 --max-seconds 0 --no-flops)
else
  bench=(--device cuda --batch 16 --warmup 5 --iters 20 --max-seconds 30)
fi
"$PYTHON" benchmarks/train_throughput.py "${bench[@]}" --json "$OUT/train_throughput.json" 2>&1 \
  | tee "$OUT/train_throughput.txt"
log "step 1 done: call step2.sh now, before the machine is given back"
