#!/usr/bin/env bash
# GPU side, the last call (scripts/gpu/README.md; carry .gpukit/callN, N in .gpukit/CALLS.txt): unpack the last
# part of the data, check every data file against the checksums made by pack.sh, then train + test the full
# profile with `petseg record` and return the records as $OUT/reference_run.tar (book/reference_run/ layout)
# plus the log.
#   MODELS (default "unet efficientnet_unet sam2_effnet ae_unet_frozen ae_unet_finetuned": the order the reference needs them), BUDGET_MINUTES (no model starts after it,
#   default 5), TIME_LIMIT_S (the record command is stopped after it, default 500; an interrupted run
#   resumes from its last epoch if step2.sh is called again on the same warm machine), WORKERS (default 12).
#   DRY_RUN=1: on this CPU machine, the quick profile cut to 1 epoch of 2 steps at 64 px, to test the scripts.
set -euo pipefail
SCRIPT=step2.sh
source "$(dirname "$0")/env.sh"
sums=(.gpukit/call*/SHA256SUMS)
[ -f "${sums[0]}" ] || die "no .gpukit/callN/SHA256SUMS in this copy: carry the last call's folder (.gpukit/CALLS.txt)" 4
[ "${#sums[@]}" = 1 ] || die "several kits' last calls in this copy (${sums[*]}): pack again and carry one" 4
dir=${sums[0]%/SHA256SUMS}
load_kit "$dir"
same_kit
[ "${DRY_RUN:-0}" = 1 ] || [ -d "$STATE/site" ] || die "no wheels installed on this machine: start again with call 1" 4
if [ -f "$dir/part$KIT_PARTS.tar" ]; then unpack_part "$KIT_PARTS" "$dir"; fi
for k in $(seq 1 "$KIT_PARTS"); do
  [ "$(cat "$STATE/parts/part$k" 2>/dev/null || true)" = "$KIT_ID" ] \
    || die "part $k of the data is not on this machine: make call $k (.gpukit/CALLS.txt) first" 4
done
log "checking all $KIT_DATA_FILES data files against SHA256SUMS"
(cd "$PETSEG_DATA" && sha256sum --quiet -c "$OLDPWD/$dir/SHA256SUMS") || die "data checksums differ" 6
MODELS="${MODELS:-unet efficientnet_unet sam2_effnet ae_unet_frozen ae_unet_finetuned}"
if [ "${DRY_RUN:-0}" = 1 ]; then
  extra=(--profile quick --device cpu --set train.epochs=1 --set train.max_steps_per_epoch=2 --set data.image_size=64)
else
  extra=(--profile full --device cuda --set "train.num_workers=${WORKERS:-12}")
fi
log "petseg record $MODELS ${extra[*]}"
set +e
# shellcheck disable=SC2086
timeout "${TIME_LIMIT_S:-500}" "$PYTHON" -m petseg record $MODELS "${extra[@]}" \
  --budget-minutes "${BUDGET_MINUTES:-5}" --out "$STATE/reference_run" 2>&1 | tee "$OUT/record.log"
status=${PIPESTATUS[0]}
set -e
if [ -d "$STATE/reference_run" ]; then
  tar -cf "$OUT/reference_run.tar" -C "$STATE" reference_run
  find "$STATE/reference_run" -type f | sort
fi
log "step 2 done (petseg record exit status $status; 124 = stopped at TIME_LIMIT_S, 3 = a model was skipped)"
exit "$status"
