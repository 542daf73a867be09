#!/usr/bin/env bash
# The `aqlm` package's CUDA kernels on the GPU machine, which has no package registry: install its wheel and
# ninja's from .carry/aq (git-ignored; fill it here with `pip download --no-deps aqlm ninja -d .carry/aq` and
# carry it), build the kernels (nvcc from /usr/local/cuda, about 30 s on the H100 machine), then run the layer
# benchmark for the additive formats, whose rows include the package's kernels as peers.
# Usage (from the repository root, on the GPU machine): bash scripts/device_aqlm_peer.sh OUTDIR [BENCHMARK ARGS...]
# (AQ_TIMEOUT: the benchmark's time limit in seconds, 220 unless set; pass a matching --budget-s for sweeps)
set -uo pipefail
OUT=${1:?usage: scripts/device_aqlm_peer.sh OUTDIR [BENCHMARK ARGS...]}
shift
mkdir -p "$OUT"
source "$(dirname "${BASH_SOURCE[0]}")/device_paths.sh"
cd "$ROOT"
pip install -q --no-index --no-deps --target /tmp/pyaq .carry/aq/*.whl
export PATH=/tmp/pyaq/bin:/usr/local/cuda/bin:$PATH PYTHONPATH=/tmp/pyaq:$PYTHONPATH TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
(time timeout 300 python3 -c "import aqlm.inference_kernels.cuda_kernel; print('aqlm cuda kernels built')") \
    > "$OUT/aqlm_build.log" 2>&1
tail -4 "$OUT/aqlm_build.log"
timeout ${AQ_TIMEOUT:-220} python3 benchmarks/gpu_kernels.py --batches 1 16 --replays 20 --only aqlm --skip-decode --budget-s 200 \
    --json "$OUT/gpu_kernels_aqlm_peer.json" "$@" 2>&1 | tee "$OUT/gpu_kernels_aqlm_peer.log" | grep "^| aqlm\|^| fp16"
