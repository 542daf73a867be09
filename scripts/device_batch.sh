#!/usr/bin/env bash
# Run many recipe settings at once on one GPU machine (the 135M model leaves the GPU and the 16 CPU
# cores mostly idle, and CLAQ's column loop is host work), by the reference protocol.
# Usage: scripts/device_batch.sh OUTDIR JOBS [PARALLEL]
#   JOBS: one job a line, "NAME recipes/METHOD.py ARGS..."; each writes NAME.json and logs/NAME.log in a
#   work folder; everything ends up in OUTDIR/results.tgz alone (the GPU machine returns few files).
# DEADLINE (seconds, default 560) stops what is still running, so the results so far come back.
# A job's own --batch-size/--eval-batch-size win over these defaults (LRQ trains on batches of 2).
# BATCH (calibration forward batch, default 16) and EVAL_BATCH (default 2) keep each job near 3 GB of
# GPU memory, so eight fit side by side (up to 9 GB each; batch 32 and eval batch 8 take 13 GB).
# Timings printed by jobs that ran side by side are contended: take speed figures from solo runs.
set -uo pipefail
source "$(dirname "$0")/device_env.sh"
tgz=$1/results.tgz; jobs=$2; par=${3:-8}
out=$(mktemp -d /tmp/lowbit-batch.XXXX)
mkdir -p "$out/logs" "$1"
export ROOT OUT_DIR=$out BATCH=${BATCH:-16} EVAL_BATCH=${EVAL_BATCH:-2} OMP_NUM_THREADS=2 MKL_NUM_THREADS=2
python3 -c "from lowbit.core.models import default_model_dir; default_model_dir()"  # convert once, not racing
grep -v '^\s*\(#\|$\)' "$jobs" | timeout "${DEADLINE:-560}" xargs -P "$par" -L 1 bash -c '
  name=$0; cmd=("$@")
  start=$(date +%s)
  python3 "$ROOT/${cmd[0]}" --eval-batch-size "$EVAL_BATCH" --batch-size "$BATCH" "${cmd[@]:1}" --json "$OUT_DIR/$name.json" \
    > "$OUT_DIR/logs/$name.log" 2>&1
  rc=$?
  echo "$name rc=$rc $(( $(date +%s) - start ))s" \
    $(grep -E "perplexity \(quantized\)|bits per weight \(total\)|quantization time|^error" "$OUT_DIR/logs/$name.log" \
      | sed -E "s/ {2,}/=/" | tr " " "_")'
pkill -f "$ROOT/recipes/" || true
tar czf "$tgz" -C "$out" .
