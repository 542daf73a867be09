# The kernel versions ab.py compares, from the repository root (session 20):
#   bash docs/results/kernels/ab_v10/versions.sh COMMIT..
# add_<commit>.py: additive.py of a commit, importing lowbit's common module (not kept in git: copies of committed
# files). 2fec2ad: codes (d_out, d_in / 8), codeword gathers at every batch; df9868e: codes transposed, the
# table-of-dot-products GEMV; 5712dcf: 1x16 back to K-contiguous rows, the table's launch zeroes y, new
# configurations; 542314e / 937c905: without / with the dependent launch; 5769737 / f98a2a4: the table kernel
# reducing across lanes / in one thread; fdc2ae9: fp16 table entries scaled per group (reverted).
# With 8b73564 among the commits, also add_fused.py (add_fused.patch on add_8b73564.py): the table computed inside
# the main kernel for each iteration's groups and gathered from shared memory (tl.gather), no separate launch.
# add_bg<G>.py (not built here): add_f98a2a4.py with G groups per program of the table kernel (4 shipped):
#   for g in 1 2 8; do sed "s/    block_g = 4  # groups per program/    block_g = $g  # groups per program/" \
#     $d/add_f98a2a4.py > $d/add_bg$g.py; done
# The runs (python3 docs/results/kernels/ab_v10/ab.py OUT.json VERSION..):
#   ab_layout_h100_v10.json: add_2fec2ad add_df9868e
#   ab_additive_h100_v10.json: AB_FORMATS=2x8 .. add_2fec2ad add_5712dcf add_fused
#   ab_pdl_h100_v10.json: AB_FORMATS=2x8 AB_BATCHES=1 .. add_542314e add_937c905
#   ab_dots_h100_v10.json: AB_FORMATS=2x8 AB_BATCHES=1 .. add_5769737 add_f98a2a4
#   ab_block_g_h100_v10.json: AB_FORMATS=2x8 AB_BATCHES=1 .. add_f98a2a4 add_bg1 add_bg2 add_bg8
#   ab_fp16_table_h100_v10.json: AB_FORMATS=2x8 AB_BATCHES=1 .. add_f98a2a4 add_fdc2ae9
set -eu
d=docs/results/kernels/ab_v10
for c in "$@"; do
  (echo "# ruff: noqa"; git show $c:kernels/src/lowbit/kernels/triton/additive.py | sed 's/from \.common import/from lowbit.kernels.triton.common import/') > $d/add_$c.py
  if [ "$c" = 8b73564 ]; then
    patch -s -o $d/add_fused.py $d/add_8b73564.py $d/add_fused.patch
  fi
done
