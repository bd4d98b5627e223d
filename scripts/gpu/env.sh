# Sourced by step1.sh, stepdata.sh and step2.sh (GPU side): where the kit's packages, data, runs and cache live,
# and the helpers the three share. Everything goes under $PETSEG_GPU_STATE (default /tmp/petseg-gpu), outside
# the repository copy: the machine keeps it between calls while it stays warm (30 s after each call).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
SCRIPT="${SCRIPT:-${0##*/}}"
log() { echo "[$(date -u +%H:%M:%S)] $*"; }
die() { echo "$SCRIPT: $1" >&2; exit "${2:-5}"; }
STATE="${PETSEG_GPU_STATE:-/tmp/petseg-gpu}"
PYTHON="${PYTHON:-python3}"
export PYTHONPATH="$STATE/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 NO_ALBUMENTATIONS_UPDATE=1 HF_HUB_OFFLINE=1 TQDM_MININTERVAL=10
export PETSEG_RUNS="$STATE/runs" PETSEG_CACHE="$STATE/cache"
OUT="${OUT:-$STATE/out}"
mkdir -p "$OUT" "$STATE/data" "$STATE/parts"

# load_kit DIR: read DIR/kit.env (the kit's id, parts, calls, data folder name) and the commit of the results.
load_kit() {
  [ -f "$1/kit.env" ] || die "no $1/kit.env in this copy: carry .gpukit/${1##*/} with this call (.gpukit/CALLS.txt)" 4
  # shellcheck disable=SC1091
  source "$1/kit.env"
  export PETSEG_DATA="$STATE/data/$KIT_DATA_NAME"   # the dataset's own folder name, as in the records made here
  mkdir -p "$PETSEG_DATA"
  if [ -f "$1/commit" ]; then
    read -r PETSEG_GIT_COMMIT PETSEG_GIT_DIRTY < "$1/commit"
    export PETSEG_GIT_COMMIT PETSEG_GIT_DIRTY   # provenance, where the copy of the checkout has no .git
  fi
}

# same_kit: die unless call 1 of this kit ran on this machine (its data parts belong to this kit).
same_kit() {
  [ "$(cat "$STATE/kit_id" 2>/dev/null || true)" = "$KIT_ID" ] || die "this machine holds no data of kit $KIT_ID \
(it was given back after an earlier call, or call 1 was not made): start again with call 1, bash scripts/gpu/step1.sh" 4
}

# unpack_part K DIR: unpack DIR/partK.tar into $PETSEG_DATA (once) and check its files against DIR/partK.sha256.
unpack_part() {
  local k=$1 dir=$2
  [ "$k" -ge 1 ] && [ "$k" -le "$KIT_PARTS" ] || die "kit $KIT_ID has parts 1 to $KIT_PARTS, not $k" 2
  if [ "$(cat "$STATE/parts/part$k" 2>/dev/null || true)" = "$KIT_ID" ]; then
    log "part $k of $KIT_PARTS is already on this machine"
    return 0
  fi
  [ -f "$dir/part$k.tar" ] || die "no $dir/part$k.tar in this copy: carry .gpukit/call$k with this call" 4
  log "unpacking part $k of $KIT_PARTS into $PETSEG_DATA"
  tar -xf "$dir/part$k.tar" -C "$PETSEG_DATA" --no-same-owner || die "cannot unpack $dir/part$k.tar" 5
  (cd "$PETSEG_DATA" && sha256sum --quiet -c "$OLDPWD/$dir/part$k.sha256") || die "part $k: data checksums differ" 6
  echo "$KIT_ID" > "$STATE/parts/part$k"
}

# next_call K: what to run after call K of this kit.
next_call() {
  local next=$(($1 + 1))
  if [ "$next" -gt "$KIT_CALLS" ]; then echo "nothing: that was the last call"
  elif [ "$next" = "$KIT_CALLS" ]; then echo "call $next at once: bash scripts/gpu/step2.sh, carrying .gpukit/call$next"
  else echo "call $next at once: bash scripts/gpu/stepdata.sh $next, carrying .gpukit/call$next"; fi
}
