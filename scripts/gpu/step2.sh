#!/usr/bin/env bash
# GPU side, call 2 of 2 (scripts/gpu/README.md): unpack part 2 of the data, check every file against the
# checksums made by pack.sh, then train + test the full profile with `petseg record` and return the records
# as $OUT/reference_run.tar (book/reference_run/ layout) plus the log.
#   MODELS (default "unet ae_unet_frozen ae_unet_finetuned"), BUDGET_MINUTES (no model starts after it,
#   default 5), TIME_LIMIT_S (the record command is stopped after it, default 500; an interrupted run
#   resumes from its last epoch if step2.sh is called again on the same machine), WORKERS (default 12).
#   DRY_RUN=1: on this CPU machine, the quick profile cut to 1 epoch of 2 steps, to test the scripts.
set -uo pipefail
cd "$(dirname "$0")/../.."
source scripts/gpu/env.sh
[ -f .gpudata/pets/.part1-done ] || {
  echo "step2: part 1 of the data is not on this machine (it was given back after step 1): call step1.sh again" >&2
  exit 4; }
log "unpacking part 2 of the data and checking every file"
tar -xf .gpukit/part2.tar -C .gpudata/pets || { echo "step2: no .gpukit/part2.tar" >&2; exit 5; }
(cd .gpudata/pets && sha256sum --quiet -c ../../.gpukit/SHA256SUMS) || { echo "step2: data checksums differ" >&2; exit 6; }
MODELS="${MODELS:-unet ae_unet_frozen ae_unet_finetuned}"
if [ "${DRY_RUN:-0}" = 1 ]; then
  extra=(--profile quick --device cpu --set train.epochs=1 --set train.max_steps_per_epoch=2 --set data.image_size=64)
else
  extra=(--profile full --device cuda --set "train.num_workers=${WORKERS:-12}")
fi
log "petseg record $MODELS ${extra[*]}"
# shellcheck disable=SC2086
timeout "${TIME_LIMIT_S:-500}" "$PYTHON" -m petseg record $MODELS "${extra[@]}" \
  --budget-minutes "${BUDGET_MINUTES:-5}" --out .gpudata/reference_run 2>&1 | tee "$OUT/record.log"
status=${PIPESTATUS[0]}
[ -d .gpudata/reference_run ] && tar -cf "$OUT/reference_run.tar" -C .gpudata reference_run
ls .gpudata/reference_run/* 2>/dev/null
log "step 2 done (petseg record exit status $status; 124 = stopped at TIME_LIMIT_S, 3 = a model was skipped)"
exit "$status"
