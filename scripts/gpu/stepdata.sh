#!/usr/bin/env bash
# GPU side, call K between step1.sh and step2.sh (scripts/gpu/README.md; carry .gpukit/callK): unpack part K of
# the data next to the parts before it and check its files. Then make the next call at once (.gpukit/CALLS.txt).
#   bash scripts/gpu/stepdata.sh K
set -euo pipefail
SCRIPT=stepdata.sh
source "$(dirname "$0")/env.sh"
[[ "${1:-}" =~ ^[0-9]+$ ]] || die "usage: bash scripts/gpu/stepdata.sh K (the number of the call and its data part)" 2
k=$1
[ "$k" -ge 2 ] || die "part 1 comes with call 1: bash scripts/gpu/step1.sh" 2
load_kit ".gpukit/call$k"
same_kit
unpack_part "$k" ".gpukit/call$k"
log "part $k of $KIT_PARTS done: next, $(next_call "$k")"
