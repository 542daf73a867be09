# Sourced by the scripts/device_*.sh on the GPU machine, where nothing is pip-installed: the packages
# from their sources (after whatever PYTHONPATH already holds), unbuffered output, Triton's compile
# cache in /tmp (kept between calls while the machine stays warm). Sets ROOT, the repository root.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$(ls -d "$ROOT"/packages/*/src | tr '\n' ':')$ROOT/kernels/src
export PYTHONUNBUFFERED=1 TRITON_CACHE_DIR=${TRITON_CACHE_DIR:-/tmp/lowbit-triton-cache}
