#!/usr/bin/env bash
# Issue 9 on the GPU machine (no network; torch + triton preinstalled; run from the repository root):
# the CUDA tests of the Triton kernels (at most 150 s), then benchmarks/gpu_kernels.py with what is left
# of about 8 minutes. Arguments after OUTDIR go to the benchmark, e.g. the v3 batch-1 sweep, which also
# writes the per-GPU configurations (copy OUT/tuned.json to kernels/src/lowbit/kernels/triton/tuned/):
#   bash scripts/device_kernels.sh OUT --batches 1 --replays 20 --sweep --write-tuned OUT/tuned.json \
#     --baseline docs/results/kernels/gpu_kernels_h100_v2.json \
#     --only "uniform4 g128" "uniform3 g128" "uniform2 g128" table binary2 "aqlm 2x8" "aqlm 1x16"
# (session 13 ran the benchmark directly, without the tests, to give the sweep the whole call).
# Usage: bash scripts/device_kernels.sh OUTDIR [BENCHMARK ARGS...]
#   OUTDIR/versions.txt, nvidia-smi.txt, tests.log, bench.log, gpu_kernels.json (written row by row)
# The packages are not pip-installed there: scripts/device_paths.sh points PYTHONPATH at their sources.
set -uo pipefail
OUT=${1:?usage: scripts/device_kernels.sh OUTDIR [BENCHMARK ARGS...]}
shift
mkdir -p "$OUT"
source "$(dirname "${BASH_SOURCE[0]}")/device_paths.sh"
cd "$ROOT"
start=$(date +%s)
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())" \
  > "$OUT/versions.txt" 2>&1
cat "$OUT/versions.txt"

# 1. CUDA tests (compiled kernels on CUDA tensors; at most 150 s); without pytest/hypothesis the
#    benchmark's rel_err column (every format against the torch reference at the real shapes) is the check.
if python3 -c "import pytest, hypothesis" 2>/dev/null; then
  # every format and path (GEMV, split K, tl.dot, outliers, act-order) and the kernel table first, then
  # the hypothesis tests (a compile per drawn shape) with what is left: in session 13 the whole file in
  # its order did not finish within 150 s
  timeout 150 python3 -m pytest -q -rA -p no:cacheprovider kernels/tests/test_triton_kernels.py \
    -k "quant_linear or paths or large or kv_shape or second_order" > "$OUT/tests.log" 2>&1
  rc=$?
  left=$(( 150 - ($(date +%s) - start) ))
  timeout $(( left > 10 ? left : 10 )) python3 -m pytest -q -p no:cacheprovider kernels/tests/test_triton_kernels.py \
    -k "property or round_trip or tiles" >> "$OUT/tests.log" 2>&1
  echo "tests rc=$rc (paths), $? (properties) $(( $(date +%s) - start ))s" | tee -a "$OUT/tests.log"
else
  echo "pytest or hypothesis not installed: CUDA tests not run (see rel_err in gpu_kernels.json)" | tee "$OUT/tests.log"
fi

# 2. The benchmark with what is left of 470 s (it starts nothing new past --budget-s and keeps the rows so far)
left=$(( 470 - ($(date +%s) - start) ))
timeout $(( left > 60 ? left : 60 )) python3 benchmarks/gpu_kernels.py --json "$OUT/gpu_kernels.json" "$@" \
  --budget-s $(( left > 90 ? left - 40 : 45 )) > "$OUT/bench.log" 2>&1
echo "bench rc=$? $(( $(date +%s) - start ))s" | tee -a "$OUT/bench.log"
tail -n 75 "$OUT/bench.log"
