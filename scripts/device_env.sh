# Source on a GPU machine without a registry, after the carried files are in $CARRY (default /tmp/lowbit-carry):
# the model's GGUF (gguf_part_aa + gguf_part_ab), the gguf wheel, and the data files.
CARRY=${CARRY:-/tmp/lowbit-carry}
if [ ! -d /tmp/site/gguf ]; then
  python3 -m pip install -q --no-index --no-deps --target /tmp/site "$CARRY"/gguf-*.whl
fi
export PYTHONPATH=/tmp/site
source "$(dirname "${BASH_SOURCE[0]}")/device_paths.sh"
export LOWBIT_HOME=/tmp/lowbit-home LOWBIT_DATA=$CARRY
mkdir -p "$LOWBIT_HOME/gguf"
G=$LOWBIT_HOME/gguf/SmolLM2-135M-Instruct.Q4_1.gguf
if [ ! -f "$G" ] && [ -f "$CARRY/gguf_part_ab" ]; then
  cat "$CARRY/gguf_part_aa" "$CARRY/gguf_part_ab" > "$G"
fi
