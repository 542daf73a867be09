#!/usr/bin/env bash
# Issue 9 on the GPU machine (no network; torch + triton + transformers preinstalled; run from the
# repository root): benchmarks/gpu_decode.py, SmolLM2-135M's architecture with random weights, batch-1
# greedy decoding eager and with CUDA graphs, fp16 and 7 packed formats, 128 tokens each (a few minutes
# on an H100; at most 240 s, the JSON is rewritten after every format so a cut run keeps its rows).
# Arguments after OUTDIR go to the benchmark, e.g. --only "uniform4 g64,aqlm 2x8" --tokens 64.
# Usage: bash scripts/device_decode.sh OUTDIR [BENCHMARK ARGS...]
#   OUTDIR/versions.txt, decode.log, gpu_decode.json
# The packages are not pip-installed there: scripts/device_paths.sh points PYTHONPATH at their sources.
set -uo pipefail
OUT=${1:?usage: scripts/device_decode.sh OUTDIR [BENCHMARK ARGS...]}
shift
mkdir -p "$OUT"
source "$(dirname "${BASH_SOURCE[0]}")/device_paths.sh"
cd "$ROOT"
start=$(date +%s)
python3 -c "import torch, triton, transformers; print('torch', torch.__version__, 'triton', triton.__version__,
'transformers', transformers.__version__, torch.cuda.get_device_name())" > "$OUT/versions.txt" 2>&1
cat "$OUT/versions.txt"
timeout 240 python3 benchmarks/gpu_decode.py --json "$OUT/gpu_decode.json" "$@" 2>&1 | tee "$OUT/decode.log"
echo "decode rc=${PIPESTATUS[0]} $(( $(date +%s) - start ))s" | tee -a "$OUT/decode.log"
