#!/usr/bin/env bash
# Build the kit that a remote GPU machine without internet needs to run the full profile (issue 3).
#
#   bash scripts/gpu/pack.sh [DATA]       DATA: the dataset folder (default: $PETSEG_DATA)
#
# Writes .gpukit/ (git-ignored), sized for transfers of at most 64 MiB each (the working tree included):
#   .gpukit/wheels/       Python 3.12 manylinux wheels of the packages petseg needs beyond what the GPU image
#                         already has (torch, torchvision, timm, torchmetrics, OpenCV, pandas ... are there)
#   .gpukit/part1.tar     the first ~45 MiB of the dataset's images
#   .gpukit/part2.tar     the other images and the annotations
#   .gpukit/SHA256SUMS    checksums of every dataset file (the GPU side checks them before training)
#   .gpukit/commit        the commit (and whether the tree is dirty) the results will be attributed to
# The dataset files travel byte for byte, so the data fingerprint there equals the one here.
# scripts/gpu/README.md says how the two transfers are used.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA="${1:-${PETSEG_DATA:?give the dataset folder as an argument or set PETSEG_DATA}}"
[ -d "$DATA/images" ] && [ -d "$DATA/annotations" ] || { echo "pack.sh: $DATA is not an Oxford-IIIT Pet folder (images/, annotations/)" >&2; exit 2; }
KIT=.gpukit
PART1_BYTES=$((45 * 1024 * 1024))
rm -rf "$KIT" && mkdir -p "$KIT/wheels"

# Wheels: exact versions of this checkout's constraints, CPython 3.12 (the GPU image's Python), no dependencies
# pulled in beyond the ones named (the rest is in the GPU image).
WHEELS="albumentations albucore pydantic pydantic_core annotated-types typing-inspection stringzilla simsimd segmentation_models_pytorch"
for name in $WHEELS; do
  pin=$(grep -i -E "^${name//[-_]/[-_]}==" constraints.txt requirements.txt | head -1 | cut -d: -f2 || true)
  [ -n "$pin" ] || { echo "pack.sh: no pinned version of $name in constraints.txt/requirements.txt" >&2; exit 2; }
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    -d "$KIT/wheels" "$pin"
done

# Data: every file, in two tar files; checksums of all of them.
(cd "$DATA" && find . -type f ! -name '.*' | LC_ALL=C sort | xargs -d '\n' sha256sum) > "$KIT/SHA256SUMS"
(cd "$DATA" && find images -type f ! -name '.*' | LC_ALL=C sort) > "$KIT/.all_images"
: > "$KIT/.part1"; : > "$KIT/.part2"; total=0
while IFS= read -r file; do
  size=$(stat -c %s "$DATA/$file")
  if [ $((total + size)) -le $PART1_BYTES ]; then echo "$file" >> "$KIT/.part1"; total=$((total + size))
  else echo "$file" >> "$KIT/.part2"; fi
done < "$KIT/.all_images"
(cd "$DATA" && find . -type f ! -name '.*' ! -path './images/*' | sed 's|^\./||' | LC_ALL=C sort) >> "$KIT/.part2"
tar -cf "$KIT/part1.tar" -C "$DATA" -T "$KIT/.part1"
tar -cf "$KIT/part2.tar" -C "$DATA" -T "$KIT/.part2"
rm -f "$KIT/.all_images" "$KIT/.part1" "$KIT/.part2"

dirty=0; git diff --quiet HEAD -- 2>/dev/null || dirty=1
echo "$(git rev-parse HEAD) $dirty" > "$KIT/commit"
tree=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
echo "kit in $KIT: wheels $(du -sb "$KIT/wheels" | cut -f1) B, part1 $(stat -c %s "$KIT/part1.tar") B, part2 $(stat -c %s "$KIT/part2.tar") B; tracked tree $tree B"
echo "transfer 1 = tree + wheels + part1: $(( tree + $(du -sb "$KIT/wheels" | cut -f1) + $(stat -c %s "$KIT/part1.tar") )) B; transfer 2 = tree + part2: $(( tree + $(stat -c %s "$KIT/part2.tar") )) B (limit $((64 * 1024 * 1024)))"
