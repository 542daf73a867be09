#!/usr/bin/env bash
# AQLM layer benchmark on one GPU, old implementation against new in the same process, in under 8 minutes:
# 2x8 g8 and 1x16 g8 on 4096x4096 (plus 11008x4096 and 4096x11008 for the new runs), and the
# reference-like search (old code, beam 8, 200 Adam steps, 20 rounds; about 240 s on an H100) once,
# for 2x8 only. Each part has its own time limit and its own JSON (written after every layer, the
# square layer's row before the wide layers'), so a part that runs out of time keeps what it finished.
# Limits: 110 + 140 + 250 = 500 s. 1x16 (estimated by bandwidth, not yet measured): every k-means
# iteration and search pass writes and reads N x 65,536 fp32 scores (N = 2^21 groups on 4096^2), about
# 0.4 s on 4096^2 and 1 s on the wide layers; with the k-means work budget (8 iterations on 4096^2,
# 2 on the wide layers) the new run should take about 10 s + 2 x 15 s, the old about 30 s.
# Usage: scripts/device_aqlm_layer.sh OUTDIR        (no network; packages are not installed: PYTHONPATH)
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/device_paths.sh"
out=${1:?usage: $0 OUTDIR}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.used,utilization.gpu --format=csv > "$out/gpu.txt" 2>&1
bench() {  # NAME LIMIT_S ARGS...
  local name=$1 limit=$2; shift 2
  timeout "$limit" python3 "$ROOT/benchmarks/aqlm_layer.py" --device cuda --json "$out/$name.json" "$@" \
    2>&1 | tee "$out/$name.log"
  echo "== $name: exit ${PIPESTATUS[0]} (124: ran past ${limit} s)" | tee -a "$out/$name.log"
}
bench aqlm_2x8 110 --settings 2x8 --runs new,new_beam8,old --wide-runs new,new_beam8
bench aqlm_1x16 140 --settings 1x16 --runs new,old --wide-runs new
bench aqlm_2x8_reference 250 --settings 2x8 --runs reference_like --wide-runs none
