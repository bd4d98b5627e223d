# Sourced by step1.sh and step2.sh (GPU side): where the kit's packages, data, runs and cache live.
# Everything goes under .gpudata/ (git-ignored), which the remote machine keeps between two calls.
export PYTHONPATH="$PWD/.gpudata/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 NO_ALBUMENTATIONS_UPDATE=1 HF_HUB_OFFLINE=1 TQDM_MININTERVAL=10
export PETSEG_DATA="$PWD/.gpudata/pets" PETSEG_RUNS="$PWD/.gpudata/runs" PETSEG_CACHE="$PWD/.gpudata/cache"
if [ -f .gpukit/commit ]; then
  read -r PETSEG_GIT_COMMIT PETSEG_GIT_DIRTY < .gpukit/commit
  export PETSEG_GIT_COMMIT PETSEG_GIT_DIRTY   # provenance, where the copy of the checkout has no .git
fi
OUT="${OUT:-$PWD/.gpudata/out}"
mkdir -p "$OUT" .gpudata/pets
PYTHON="${PYTHON:-python3}"
log() { echo "[$(date -u +%H:%M:%S)] $*"; }
