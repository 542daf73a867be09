#!/usr/bin/env bash
# The spine's results table on a GPU: fp, RTN and GPTQ (act-order) at 4/3/2 bits group 64 and 4/3 bits
# per channel, by the reference protocol (WikiText-2 test 147 x 2048; PTB calibration 128 x 2048, seed 0).
# Usage: scripts/device_spine.sh OUTDIR [settings...]  (a setting is METHOD:BITS:GROUP, GROUP 0 = per channel)
set -euo pipefail
source "$(dirname "$0")/device_env.sh"
out=$1; shift
mkdir -p "$out"
settings=${*:-"rtn:4:64 gptq:4:64 rtn:3:64 gptq:3:64 rtn:2:64 gptq:2:64 rtn:3:0 gptq:3:0 rtn:4:0 gptq:4:0"}
for s in $settings; do
  IFS=: read -r method bits group <<<"$s"
  python3 "$ROOT/recipes/$method.py" --bits "$bits" --group-size "$group" --eval-batch-size 8 --batch-size 32 \
    --json "$out/${method}_w${bits}_g${group}.json" 2>&1 | grep -v "it/s\]" | grep -v "s/it\]" || exit 1
done
