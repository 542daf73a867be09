# The kernel versions ab.py compares, from the repository root (session 19):
#   bash docs/results/kernels/ab_v9/versions.sh
# ct_<commit>.py: column_tables.py of a commit, importing lowbit's common module. ct_blocked.py: e8a885c with every
# width's planes in blocks of 32 columns (the state measured before e8a885c kept blocks for 4 bits only).
# ct_grid.py and ct_lpt.py: bd43d50 with the segment x part axis first in the grid, and with the widest
# segment's programs launched first.
#   ab_part_h100_v9.json: an earlier form of ab.py (3fea4f3, 011db9a and dd8dac4 with its single-width branch)
#   ab_planes_h100_v9.json: python3 docs/results/kernels/ab_v9/ab.py OUT.json ct_1b4f496 ct_blocked
#   ab_mixed_order_h100_v9.json: AB_FORMATS=mixed AB_SHAPES=4096x4096,4096x11008,11008x4096 AB_MIXED_CONFIGS=1 \
#     python3 docs/results/kernels/ab_v9/ab.py OUT.json ct_bd43d50 ct_grid ct_lpt
set -eu
d=docs/results/kernels/ab_v9
for c in 3fea4f3 011db9a 1b4f496 e8a885c bd43d50; do
  git show $c:kernels/src/lowbit/kernels/triton/column_tables.py | sed 's/from \.common import/from lowbit.kernels.triton.common import/' > $d/ct_$c.py
done
patch -s -o $d/ct_blocked.py $d/ct_e8a885c.py $d/ct_blocked.patch
patch -s -o $d/ct_grid.py $d/ct_bd43d50.py $d/ct_grid.patch
patch -s -o $d/ct_lpt.py $d/ct_bd43d50.py $d/ct_lpt.patch
