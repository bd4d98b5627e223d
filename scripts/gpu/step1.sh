#!/usr/bin/env bash
# GPU side, call 1 (scripts/gpu/README.md; carry .gpukit/call1): install the carried wheels, unpack part 1 of the
# data, check that petseg imports and builds its models there, run the GPU tests and the training-throughput
# benchmark (CUDA, mixed precision). Results go to $OUT. Then make call 2 at once (.gpukit/CALLS.txt).
#   DRY_RUN=1: the same steps on this CPU machine with tiny settings (no wheel install), to test the scripts.
set -euo pipefail
SCRIPT=step1.sh
source "$(dirname "$0")/env.sh"
load_kit .gpukit/call1
if [ "$(cat "$STATE/kit_id" 2>/dev/null || true)" != "$KIT_ID" ]; then  # another kit's data: start afresh
  rm -rf "$STATE/data" "$STATE/parts" && mkdir -p "$PETSEG_DATA" "$STATE/parts"
  echo "$KIT_ID" > "$STATE/kit_id"
fi
if [ "${DRY_RUN:-0}" != 1 ]; then
  wheels=(.gpukit/call1/wheels/*.whl)
  [ -f "${wheels[0]}" ] || die "no wheels in .gpukit/call1/wheels (a DRY_RUN kit?): pack again without DRY_RUN"
  log "installing ${#wheels[@]} wheels into $STATE/site"
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$STATE/site" \
    "${wheels[@]}" || die "wheel install failed"
fi
unpack_part 1 .gpukit/call1
failed=()
log "environment and kit check"
if ! { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
       "$PYTHON" scripts/gpu/check_kit.py; } 2>&1 | tee "$OUT/environment.txt"; then
  die "petseg cannot run with these packages (see above and $OUT/environment.txt)"
fi
log "GPU tests"
"$PYTHON" -m pytest tests/training/test_gpu.py -m gpu -q -p no:cacheprovider 2>&1 | tee "$OUT/gpu_tests.txt" \
  || failed+=("GPU tests")
log "training-throughput benchmark"
if [ "${DRY_RUN:-0}" = 1 ]; then
  bench=(--device cpu --config quick --sizes 64 --batch 2 --warmup 1 --iters 1 --max-seconds 0 --no-flops)
else
  bench=(--device cuda --batch 16 --warmup 5 --iters 20 --max-seconds 30)
fi
"$PYTHON" benchmarks/train_throughput.py "${bench[@]}" --json "$OUT/train_throughput.json" 2>&1 \
  | tee "$OUT/train_throughput.txt" || failed+=("benchmark")
log "step 1 done${failed[*]:+ (failed: ${failed[*]})}: next, $(next_call 1)"
[ "${#failed[@]}" = 0 ]
