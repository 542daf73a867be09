# The kernel versions ab.py compares, from the repository root (session 20):
#   bash docs/results/kernels/ab_v10/versions.sh
# add_<commit>.py: additive.py of a commit, importing lowbit's common module (2fec2ad: codes (d_out, d_in / 8),
# codeword gathers at every batch; df9868e: codes transposed, the table-of-dot-products GEMV; 5712dcf: 1x16 back to
# K-contiguous rows, the table's launch zeroes y, new configurations). Not kept in git (copies of committed files).
# add_fused.py (kept): 5712dcf's parent with the table computed inside the main kernel for each iteration's groups
# and gathered from shared memory (tl.gather), no separate launch.
# add_fdc2ae9.py: fp16 table entries scaled per group (reverted after ab_fp16_table_h100_v10.json).
# add_bg<G>.py: add_f98a2a4.py with G groups per program of the table kernel (4 shipped):
#   for g in 1 2 8; do sed "s/    block_g = 4  # groups per program/    block_g = $g  # groups per program/" \
#     $d/add_f98a2a4.py > $d/add_bg$g.py; done
#   ab_additive_h100_v10.json: python3 docs/results/kernels/ab_v10/ab.py OUT.json add_2fec2ad add_<commit>
set -eu
d=docs/results/kernels/ab_v10
for c in "$@"; do
  (echo "# ruff: noqa"; git show $c:kernels/src/lowbit/kernels/triton/additive.py | sed 's/from \.common import/from lowbit.kernels.triton.common import/') > $d/add_$c.py
done
